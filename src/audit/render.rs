//! The report as Markdown, as one self-contained HTML page (inline CSS and SVG charts, no
//! script, nothing fetched: it opens offline), or as JSON.

use super::AuditReport;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn json(r: &AuditReport) -> String {
    let mut s =
        serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn scope(r: &AuditReport) -> String {
    format!(
        "{} to {}{}",
        r.since.format("%Y-%m-%d %H:%M UTC"),
        r.until.format("%Y-%m-%d %H:%M UTC"),
        r.patient
            .map(|p| format!(", patient {p}"))
            .unwrap_or_default()
    )
}

pub fn markdown(r: &AuditReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# kidjamo audit report\n\n{}; database {}{}; checks as of {}.\n",
        scope(r),
        r.database,
        r.lake
            .as_ref()
            .map(|l| format!(", lake {l}"))
            .unwrap_or_default(),
        r.as_of
    );
    let _ = writeln!(
        s,
        "## Security posture: {} of {} checks failed\n",
        r.failed_checks,
        r.security_checks.len()
    );
    let _ = writeln!(s, "| check | result | problems | fix |\n|---|---|---|---|");
    for c in &r.security_checks {
        let _ = writeln!(
            s,
            "| {} (`{}`) | {} | {} | {} |",
            c.title,
            c.id,
            if c.passed { "pass" } else { "**FAIL**" },
            c.problems.join("; "),
            c.fix
        );
    }
    let _ = writeln!(s, "\n## Changes and accesses per patient\n");
    if r.activity.is_empty() {
        let _ = writeln!(s, "No audit record in the period.");
    } else {
        let _ = writeln!(s, "| patient | audit records | rows by table and operation | end users | database roles | first | last |\n|---|---|---|---|---|---|---|");
        for a in &r.activity {
            let rows: Vec<String> = a.rows.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                a.patient_id.map_or("(none)".to_string(), |p| p.to_string()),
                a.audit_records,
                rows.join(", "),
                a.actors,
                a.db_roles.join(", "),
                a.first.format("%Y-%m-%d %H:%M"),
                a.last.format("%Y-%m-%d %H:%M")
            );
        }
    }
    let _ = writeln!(s, "\n## Exports, backups, restores and erasures\n");
    if r.data_rights.is_empty() {
        let _ = writeln!(s, "None in the period.");
    } else {
        let _ = writeln!(
            s,
            "| when | operation | patient | reference | by | details |\n|---|---|---|---|---|---|"
        );
        for e in &r.data_rights {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.operation,
                e.patient_id
                    .map_or("(erased)".to_string(), |p| p.to_string()),
                e.reference.clone().unwrap_or_default(),
                e.db_role,
                e.details
                    .as_ref()
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(s, "\n## Data quality (Gold)\n");
    if r.data_quality.is_empty() {
        let _ = writeln!(
            s,
            "{}",
            if r.lake.is_some() {
                "No Gold partition in the period."
            } else {
                "No lake given (`--lake`)."
            }
        );
    } else {
        let _ = writeln!(s, "| day | patients | devices | samples | completeness | samples not ok | alerts (critical) |\n|---|---|---|---|---|---|---|");
        for d in &r.data_quality {
            let not_ok: i64 = d
                .flags
                .iter()
                .filter(|(k, _)| *k != "ok")
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} ({}) |",
                d.date,
                d.patients,
                d.devices,
                d.samples,
                d.completeness_mean
                    .map_or("-".into(), |c| format!("{:.1} %", c * 100.0)),
                not_ok,
                d.alerts.values().sum::<i64>(),
                d.alerts.get("critical").copied().unwrap_or(0)
            );
        }
    }
    let _ = writeln!(s, "\n## Pipeline runs\n");
    if r.pipeline_runs.is_empty() {
        let _ = writeln!(s, "None recorded in the period.");
    } else {
        let _ = writeln!(
            s,
            "| run | command | covers | key counts | outputs |\n|---|---|---|---|---|"
        );
        for p in &r.pipeline_runs {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                p.run_id,
                p.command,
                p.covers,
                key_counts(&p.counts),
                p.outputs
            );
        }
    }
    s
}

fn key_counts(c: &BTreeMap<String, u64>) -> String {
    [
        "bronze_rows",
        "silver_rows",
        "quarantined",
        "alerts",
        "records.emitted",
        "records.quarantined",
    ]
    .iter()
    .filter_map(|k| c.get(*k).map(|n| format!("{k} {n}")))
    .collect::<Vec<_>>()
    .join(", ")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const SEVERITY_COLOURS: [(&str, &str); 4] = [
    ("info", "#9e9e9e"),
    ("warn", "#f2b705"),
    ("alert", "#f27405"),
    ("critical", "#c62828"),
];

/// Vertical bars, stacked by series, one group per category.
fn stacked_bars(
    title: &str,
    categories: &[String],
    series: &[(&str, &str, Vec<f64>)],
    unit: &str,
) -> String {
    let (w, h, left, bottom, top) = (720.0, 300.0, 50.0, 80.0, 30.0);
    let n = categories.len().max(1) as f64;
    let totals: Vec<f64> = (0..categories.len())
        .map(|i| series.iter().map(|s| s.2[i]).sum())
        .collect();
    let max = totals.iter().cloned().fold(0.0, f64::max).max(1e-9);
    let plot_h = h - bottom - top;
    let band = (w - left - 10.0) / n;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><title>{t}</title><text x="{left}" y="18" class="ct">{t}</text>"#,
        t = esc(title)
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{y}" class="ax"/><line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" class="ax"/>"#,
        y = h - bottom,
        x2 = w - 10.0
    );
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" class="tick" text-anchor="end">{m}{unit}</text><text x="{x}" y="{y0}" class="tick" text-anchor="end">0</text>"#,
        x = left - 4.0,
        y = top + 4.0,
        m = fmt_num(max),
        y0 = h - bottom
    );
    for (i, cat) in categories.iter().enumerate() {
        let x = left + band * i as f64 + band * 0.15;
        let mut y = h - bottom;
        for (name, colour, values) in series {
            let v = values[i];
            if v <= 0.0 {
                continue;
            }
            let bh = v / max * plot_h;
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" fill="{colour}"><title>{c}: {v} {name}</title></rect>"#,
                bw = band * 0.7,
                c = esc(cat),
                v = fmt_num(v),
                name = esc(name)
            );
        }
        if categories.len() <= 31 {
            // Days as MM-DD under their bar; other labels (quality flags) slanted, in full.
            let is_day = cat.len() == 10 && cat.as_bytes()[4] == b'-';
            let cx = x + band * 0.35;
            let ty = h - bottom + 14.0;
            let (label, anchor, transform) = if is_day {
                (cat.get(5..).unwrap_or(cat), "middle", String::new())
            } else {
                (
                    cat.as_str(),
                    "end",
                    format!(r#" transform="rotate(-30 {cx:.1} {ty})""#),
                )
            };
            let _ = write!(
                svg,
                r#"<text x="{cx:.1}" y="{ty}" class="tick" text-anchor="{anchor}"{transform}>{label}</text>"#,
                label = esc(label)
            );
        }
    }
    let mut lx = left;
    for (name, colour, _) in series.iter().filter(|s| !s.0.is_empty()) {
        let _ = write!(
            svg,
            r#"<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/><text x="{tx}" y="{ty}" class="tick">{n}</text>"#,
            ly = h - 16.0,
            tx = lx + 14.0,
            ty = h - 7.0,
            n = esc(name)
        );
        lx += 90.0;
    }
    svg.push_str("</svg>");
    svg
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

pub fn html(r: &AuditReport) -> String {
    let days: Vec<String> = r.data_quality.iter().map(|d| d.date.to_string()).collect();
    let mut charts = String::new();
    if !days.is_empty() {
        let series: Vec<(&str, &str, Vec<f64>)> = SEVERITY_COLOURS
            .iter()
            .map(|(s, c)| {
                (
                    *s,
                    *c,
                    r.data_quality
                        .iter()
                        .map(|d| d.alerts.get(*s).copied().unwrap_or(0) as f64)
                        .collect(),
                )
            })
            .collect();
        charts.push_str(&stacked_bars(
            "Alerts per day by severity",
            &days,
            &series,
            "",
        ));
        let completeness = vec![(
            "completeness",
            "#2e7d32",
            r.data_quality
                .iter()
                .map(|d| d.completeness_mean.unwrap_or(0.0) * 100.0)
                .collect(),
        )];
        charts.push_str(&stacked_bars(
            "Completeness per day (mean over patients, %)",
            &days,
            &completeness,
            " %",
        ));
        let mut flags: BTreeMap<&str, i64> = BTreeMap::new();
        for d in &r.data_quality {
            for (k, n) in &d.flags {
                if k != "ok" {
                    *flags.entry(k.as_str()).or_insert(0) += n;
                }
            }
        }
        let names: Vec<String> = flags.keys().map(|k| k.to_string()).collect();
        let values = vec![("", "#1565c0", flags.values().map(|n| *n as f64).collect())];
        charts.push_str(&stacked_bars(
            "Samples per quality flag other than ok (whole period)",
            &names,
            &values,
            "",
        ));
    }
    let body = markdown_to_html(&markdown(r));
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kidjamo audit report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.fail {{ color: #b71c1c; font-weight: bold; }} .pass {{ color: #1b5e20; }}
svg {{ display: block; margin: 1rem 0; }} .ct {{ font-size: 14px; font-weight: 600; }} .tick {{ font-size: 10px; fill: #555; }} .ax {{ stroke: #888; }}
</style></head><body>
{body}
<h2>Charts</h2>
{charts_or_none}
</body></html>
"#,
        charts_or_none = if charts.is_empty() {
            "<p>No Gold data in the period.</p>".to_string()
        } else {
            charts
        }
    )
}

/// The small Markdown subset `markdown()` writes: headings, paragraphs, pipe tables.
fn markdown_to_html(md: &str) -> String {
    let mut out = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(h));
        } else if line.starts_with('|') {
            let cells = |l: &str| {
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect::<Vec<_>>()
            };
            out.push_str("<table><thead><tr>");
            for c in cells(line) {
                let _ = write!(out, "<th>{}</th>", inline(&c));
            }
            out.push_str("</tr></thead><tbody>\n");
            lines.next(); // the |---| line
            while let Some(l) = lines.peek() {
                if !l.starts_with('|') {
                    break;
                }
                out.push_str("<tr>");
                for c in cells(l) {
                    let class = match c.as_str() {
                        "**FAIL**" => " class=\"fail\"",
                        "pass" => " class=\"pass\"",
                        _ => "",
                    };
                    let _ = write!(out, "<td{class}>{}</td>", inline(&c));
                }
                out.push_str("</tr>\n");
                lines.next();
            }
            out.push_str("</tbody></table>\n");
        } else if !line.trim().is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(line));
        }
    }
    out
}

fn inline(s: &str) -> String {
    let mut e = esc(s);
    while let (Some(a), true) = (e.find("**"), e.matches("**").count() >= 2) {
        e.replace_range(a..a + 2, "<strong>");
        if let Some(b) = e.find("**") {
            e.replace_range(b..b + 2, "</strong>");
        }
    }
    while let (Some(a), true) = (e.find('`'), e.matches('`').count() >= 2) {
        e.replace_range(a..a + 1, "<code>");
        if let Some(b) = e.find('`') {
            e.replace_range(b..b + 1, "</code>");
        }
    }
    e
}
