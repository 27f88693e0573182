import { DASHBOARD_HTML } from './html.js';
import { DASHBOARD_JS } from './script.js';
import { DASHBOARD_CSS } from './style.js';
import { UPLOT_CSS, UPLOT_JS, UPLOT_LICENSE } from './uplot.js';

/** The dashboard's files, by path below the handler's base ('' is the page itself). */
export const PAGE: Readonly<Record<string, { readonly type: string; readonly body: string }>> = {
  '': { type: 'text/html; charset=utf-8', body: DASHBOARD_HTML },
  'dashboard.js': { type: 'text/javascript; charset=utf-8', body: DASHBOARD_JS },
  'dashboard.css': { type: 'text/css; charset=utf-8', body: DASHBOARD_CSS },
  'uplot.js': { type: 'text/javascript; charset=utf-8', body: UPLOT_JS },
  'uplot.css': { type: 'text/css; charset=utf-8', body: UPLOT_CSS },
  'uplot-license.txt': { type: 'text/plain; charset=utf-8', body: UPLOT_LICENSE },
};
