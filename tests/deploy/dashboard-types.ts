// The shape dashboards/strictly.json must have, built from Grafana's own
// published types (@grafana/schema) and tightened where strictly needs more.
//
// ci/gen-type-checks.py writes the dashboard out as a TypeScript object literal
// typed `StrictlyDashboard`, and `tsc --noEmit` checks it. An object literal
// gets excess-property checks, so a misspelt field fails as well as a value of
// the wrong type.

import type {
  Dashboard,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
} from "@grafana/schema";
import type { DataQuery } from "@grafana/schema";
import type * as Stat from "@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen";
import type * as StateTimeline from "@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen";
import type * as Table from "@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen";
import type * as TimeSeries from "@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen";

// Grafana's types use TypeScript enums (`ThresholdsMode.Absolute`), which a
// JSON string like "absolute" is not assignable to. Json<T> turns each enum
// into the union of its values, recursively, and leaves everything else as
// it is.
type IsAny<T> = 0 extends 1 & T ? true : false;
type Json<T> =
  IsAny<T> extends true ? T
  : T extends string ? `${T}`
  : T extends number | boolean | null | undefined ? T
  : T extends ReadonlyArray<infer U> ? Array<Json<U>>
  : T extends object ? { [K in keyof T]: Json<T[K]> }
  : T;

// Every panel and query must use the dashboard's data source variable, so
// the dashboard works in any Grafana whatever its Prometheus is called.
type PrometheusFromVariable = { type: "prometheus"; uid: "${datasource}" };

// Grafana publishes no type for Prometheus queries in @grafana/schema; these
// are the fields its query editor writes.
interface PrometheusQuery extends Omit<DataQuery, "datasource"> {
  datasource: PrometheusFromVariable;
  expr: string;
  editorMode?: "code" | "builder";
  exemplar?: boolean;
  format?: "time_series" | "table" | "heatmap";
  instant?: boolean;
  interval?: string;
  legendFormat?: string;
  range?: boolean;
}

// Grafana's veneer lets `custom` hold any extra key; strictly's panels
// should hold only the keys their panel type knows.
type FieldConfigOf<Custom> = Omit<FieldConfigSource, "defaults"> & {
  defaults: Omit<FieldConfig, "custom"> & { custom?: Custom };
};

type PanelOf<Type extends string, Options, Custom> = Json<
  Omit<Panel, "type" | "datasource" | "targets" | "options" | "fieldConfig"> & {
    type: Type;
    datasource: PrometheusFromVariable;
    targets: PrometheusQuery[];
    options: Options;
    fieldConfig: FieldConfigOf<Custom>;
  }
>;

export type StrictlyPanel =
  | PanelOf<"stat", Stat.Options, Record<string, never>>
  | PanelOf<"state-timeline", StateTimeline.Options, StateTimeline.FieldConfig>
  | PanelOf<"table", Table.Options, Table.FieldConfig>
  | PanelOf<"timeseries", TimeSeries.Options, TimeSeries.FieldConfig>
  | Json<Omit<RowPanel, "panels"> & { panels: [] }>;

export type StrictlyDashboard = Json<Omit<Dashboard, "panels">> & {
  uid: "strictly-readiness";
  panels: StrictlyPanel[];
};
