/**
 * Panel helpers of the PTW dashboards: every query goes to the dashboard's `datasource` variable
 * (a Prometheus), every panel says what it shows. Typed by @grafana/grafana-foundation-sdk.
 */
import * as common from '@grafana/grafana-foundation-sdk/common';
import {
  DashboardBuilder,
  DashboardCursorSync,
  DashboardLinkBuilder,
  DashboardLinkType,
  DatasourceVariableBuilder,
  QueryVariableBuilder,
  ThresholdsConfigBuilder,
  ThresholdsMode,
  VariableRefresh,
  VariableSort,
  type Dashboard,
} from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatPanelBuilder } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TimeseriesPanelBuilder } from '@grafana/grafana-foundation-sdk/timeseries';

/** The Prometheus every panel reads: the dashboard's `datasource` variable. */
// eslint-disable-next-line no-template-curly-in-string -- Grafana's variable syntax, not a JavaScript template
export const DATASOURCE: common.DataSourceRef = { type: 'prometheus', uid: '${datasource}' };

/** A PromQL expression and its legend (Grafana's `{{label}}` templates). */
export interface Query {
  expr: string;
  legend: string;
}

export const q = (expr: string, legend: string): Query => ({ expr, legend });

function targets(queries: Query[]): DataqueryBuilder[] {
  return queries.map((query, i) =>
    new DataqueryBuilder()
      .datasource(DATASOURCE)
      .expr(query.expr)
      .legendFormat(query.legend)
      .refId(String.fromCharCode(65 + i)),
  );
}

export interface PanelSize {
  /** Grid columns of 24. */
  w?: number;
  h?: number;
}

/** A time series panel: one line per series of each query. */
export function timeseries(title: string, description: string, unit: string, queries: Query[], opts: PanelSize & { stacked?: boolean } = {}): TimeseriesPanelBuilder {
  const panel = new TimeseriesPanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .min(0)
    .span(opts.w ?? 12)
    .height(opts.h ?? 8)
    .fillOpacity(opts.stacked ? 30 : 10)
    .legend(new common.VizLegendOptionsBuilder().showLegend(true).displayMode(common.LegendDisplayMode.List).placement(common.LegendPlacement.Bottom))
    .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending));
  if (opts.stacked) panel.stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal));
  for (const t of targets(queries)) panel.withTarget(t);
  return panel;
}

/** A single figure (the last value), green below `warnAt`, red from it when given. */
export function stat(title: string, description: string, unit: string, queries: Query[], opts: PanelSize & { warnAt?: number } = {}): StatPanelBuilder {
  const steps =
    opts.warnAt === undefined
      ? [{ value: null, color: 'blue' }]
      : [
          { value: null, color: 'green' },
          { value: opts.warnAt, color: 'red' },
        ];
  const panel = new StatPanelBuilder()
    .title(title)
    .description(description)
    .datasource(DATASOURCE)
    .unit(unit)
    .span(opts.w ?? 6)
    .height(opts.h ?? 4)
    .colorMode(common.BigValueColorMode.Value)
    .graphMode(common.BigValueGraphMode.Area)
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
    .thresholds(new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps(steps));
  for (const t of targets(queries)) panel.withTarget(t);
  return panel;
}

/**
 * A PTW dashboard: the `datasource` variable, optionally an `instance` variable of one job's
 * targets, links to the other PTW dashboards (tag `ptw`), shared crosshair.
 */
export function ptwDashboard(uid: string, title: string, description: string, opts: { instancesOf?: string } = {}): DashboardBuilder {
  const d = new DashboardBuilder(title)
    .uid(uid)
    .description(description)
    .tags(['ptw', 'generated'])
    .editable()
    .tooltip(DashboardCursorSync.Crosshair)
    .time({ from: 'now-3h', to: 'now' })
    .refresh('30s')
    .timezone('browser')
    .withVariable(new DatasourceVariableBuilder('datasource').label('Prometheus').type('prometheus'))
    .link(new DashboardLinkBuilder('PTW dashboards').type(DashboardLinkType.Dashboards).tags(['ptw']).asDropdown(true).includeVars(true).keepTime(true));
  if (opts.instancesOf) {
    d.withVariable(
      new QueryVariableBuilder('instance')
        .label('Instance')
        .datasource(DATASOURCE)
        .query(`label_values(up{job="${opts.instancesOf}"}, instance)`)
        .definition(`label_values(up{job="${opts.instancesOf}"}, instance)`)
        .refresh(VariableRefresh.OnTimeRangeChanged)
        .sort(VariableSort.AlphabeticalAsc)
        .multi(true)
        .includeAll(true)
        .allValue('.*'),
    );
  }
  return d;
}

/** The built dashboard with its panels numbered in order (Grafana keys panel state by id). */
export function finish(builder: DashboardBuilder): Dashboard {
  const d = builder.build();
  let id = 0;
  for (const p of d.panels ?? []) {
    p.id = ++id;
    if ('panels' in p && Array.isArray(p.panels)) for (const inner of p.panels) inner.id = ++id;
  }
  return d;
}
