/** The dashboard's page: everything it loads comes from the same handler (no CDN, works offline). */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Floodgate</title>
<link rel="stylesheet" href="uplot.css">
<link rel="stylesheet" href="dashboard.css">
</head>
<body>
<header>
  <h1>Floodgate</h1>
  <span id="status">connecting…</span>
  <label>Admin token <input id="token" type="password" autocomplete="off" placeholder="needed to act"></label>
</header>
<section id="shedder" hidden>
  <h2>Server capacity (shedder)</h2>
  <p id="shedder-numbers"></p>
  <div id="shedder-chart"></div>
</section>
<section id="stores" hidden>
  <h2>Shared store (Redis)</h2>
  <ul id="stores-list"></ul>
</section>
<section id="fleet" hidden>
  <h2 id="fleet-title">Fleet</h2>
  <div class="row">
    <div id="fleet-limiters"></div>
    <div>
      <h3>Processes</h3>
      <table id="fleet-processes">
        <thead><tr><th>process</th><th>requests</th><th>refused</th><th>published</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </div>
</section>
<main id="limiters"></main>
<footer>Charts by <a href="uplot-license.txt">uPlot</a> (MIT), shipped with Floodgate.</footer>
<script src="uplot.js"></script>
<script src="dashboard.js"></script>
</body>
</html>
`;
