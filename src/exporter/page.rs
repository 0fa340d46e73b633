//! `GET /`: a small status page for people, rendered on the server, no JavaScript.

use std::fmt::Write;

use super::Snapshot;
use super::api::rfc3339;
use crate::engine::{ServiceReport, Verdict, human_coarse};

/// How often the page reloads itself, in seconds.
const REFRESH_SECONDS: u32 = 10;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;color:#1f2328}\
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}\
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:top}\
.badge{padding:.1rem .5rem;border-radius:1rem;color:#fff;font-weight:600;white-space:nowrap}\
.ready{background:#1a7f37}.plaintext{background:#cf222e}\
.insufficient_data{background:#9a6700}.unknown{background:#6e7781}\
.reason{color:#57606a;font-size:.9rem}\
@media (max-width:40rem){.wide{display:none}}";

/// Renders the page for the latest snapshot.
pub fn render(snapshot: Option<&Snapshot>) -> String {
    let mut html = String::with_capacity(8 * 1024);
    head(&mut html);
    match snapshot {
        None => html.push_str("<p>Waiting for the first poll of the control plane.</p>"),
        Some(snapshot) => body(&mut html, snapshot),
    }
    html.push_str("</body></html>\n");
    html
}

fn head(html: &mut String) {
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>strictly</title><style>{STYLE}</style></head><body>\
         <h1>strictly: ready for Strict mTLS?</h1>"
    );
}

fn body(html: &mut String, snapshot: &Snapshot) {
    let health = if snapshot.up {
        "control plane reachable"
    } else {
        "control plane NOT reachable: verdicts go unknown as data gets stale"
    };
    let _ = write!(
        html,
        "<p id=\"health\">Updated {} · {health} · {} · \
         <a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/inbounds\">JSON</a></p>",
        rfc3339(snapshot.at),
        tally(&snapshot.reports)
    );

    let mut mesh: Option<&str> = None;
    for report in &snapshot.reports {
        if mesh != Some(report.key.mesh.as_str()) {
            if mesh.is_some() {
                html.push_str("</tbody></table>");
            }
            mesh = Some(&report.key.mesh);
            table_start(html, &report.key.mesh);
        }
        row(html, report);
    }
    if mesh.is_some() {
        html.push_str("</tbody></table>");
    } else {
        html.push_str("<p>No sidecar inbounds found in the selected meshes.</p>");
    }
}

/// "3 inbounds: 2 ready, 1 plaintext"
pub fn tally(reports: &[ServiceReport]) -> String {
    let counts: Vec<String> = Verdict::ALL
        .iter()
        .map(|v| (v, reports.iter().filter(|r| r.verdict == *v).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| format!("{n} {v}"))
        .collect();
    format!("{} inbounds: {}", reports.len(), counts.join(", "))
}

fn table_start(html: &mut String, mesh: &str) {
    let _ = write!(
        html,
        "<h2>Mesh {}</h2><table><thead><tr><th>Service</th><th>Port</th><th>Verdict</th>\
         <th>Clean for</th><th class=\"wide\">Last plaintext</th><th>Replicas</th>\
         </tr></thead><tbody>",
        escape(mesh)
    );
}

fn row(html: &mut String, report: &ServiceReport) {
    let verdict = report.verdict.as_str();
    let clean = if report.verdict == Verdict::Unknown {
        "–".to_string()
    } else {
        human_coarse(report.clean)
    };
    let last = report.last_plaintext.map_or("never".to_string(), rfc3339);
    let _ = write!(
        html,
        "<tr class=\"inbound\" data-verdict=\"{verdict}\"><td>{}</td><td>{}</td>\
         <td><span class=\"badge {verdict}\">{verdict}</span>\
         <div class=\"reason\">{}</div></td><td>{}</td><td class=\"wide\">{}</td>\
         <td>{}/{}</td></tr>",
        escape(&report.key.service),
        report.key.port,
        escape(&report.reason),
        clean,
        last,
        report.replicas_reporting,
        report.replicas.len()
    );
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn says_it_waits_before_the_first_cycle() {
        assert!(render(None).contains("Waiting for the first poll"));
    }
}
