export const DASHBOARD_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
header label { margin-left: auto; }
#status { opacity: .8; }
main, section { padding: 0 1.2em; }
.limiter, #shedder, #fleet { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; margin: 1em 0; padding: .8em 1em; }
.limiter h2, #shedder h2, #fleet h2 { font-size: 1.05em; margin: 0 0 .4em; }
.policies, .suggestion { color: #4a5365; margin: .2em 0; }
.row { display: flex; gap: 1.5em; flex-wrap: wrap; }
.row > div { flex: 1 1 420px; min-width: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid #eef0f3; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
button { cursor: pointer; }
.refused { color: #b42318; font-weight: 600; }
.note { color: #6b7385; font-size: .9em; }
#shedder, #fleet { margin: 1em 1.2em; }
.fleet-limiter h3 { font-size: 1em; margin: .6em 0 .3em; }
footer { padding: 1em 1.2em; color: #6b7385; font-size: .85em; }
`;
