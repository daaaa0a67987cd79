//! The value report as text (a terminal table), JSON, or one self-contained
//! HTML page whose charts are inline SVG drawn here.
//!
//! Pure string building. The HTML references nothing outside itself (no
//! scripts, fonts, images or style sheets), so it can be mailed or attached
//! to a ticket and renders the same offline; every record-derived string is
//! escaped.

use super::{Handling, Quantiles, Row, ValueReport};
use std::fmt::Write;

fn mins(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{}s", ms / 1000),
        Some(ms) => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.0}%", 100.0 * a as f64 / b as f64)
    }
}

fn q(x: &Quantiles) -> String {
    format!("{} / {}", mins(x.median_ms), mins(x.p90_ms))
}

fn row_cells(name: &str, r: &Row) -> Vec<String> {
    vec![
        name.to_string(),
        r.incidents.to_string(),
        r.automatic.to_string(),
        r.approved.to_string(),
        r.escalated.to_string(),
        r.unhandled.to_string(),
        r.verified_fixes.to_string(),
        r.undos.to_string(),
        r.wrong_action_signals.to_string(),
        q(&r.time_to_detect),
        q(&r.time_to_recover),
        format!("{:.0}", r.minutes_saved),
        r.held_back.to_string(),
    ]
}

const HEADERS: [&str; 13] = [
    "category",
    "incidents",
    "auto",
    "approved",
    "escalated",
    "unhandled",
    "verified",
    "undos",
    "wrong?",
    "detect p50/p90",
    "recover p50/p90",
    "min saved",
    "held",
];

/// A terminal table: one line per category and the total, then where
/// automation is held back.
pub fn text(r: &ValueReport) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADERS.iter().map(|s| s.to_string()).collect()];
    for (c, row) in &r.categories {
        rows.push(row_cells(c.as_str(), row));
    }
    rows.push(row_cells("all", &r.overall));
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "value report: {} incidents{}{}",
        r.overall.incidents,
        r.from.map_or(String::new(), |f| format!(" from {f}")),
        r.until.map_or(String::new(), |u| format!(" to {u}")),
    );
    for (k, row) in rows.iter().enumerate() {
        if k == rows.len() - 1 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            let _ = writeln!(s, "{}", "-".repeat(total));
        }
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
    }
    let o = &r.overall;
    let _ = writeln!(
        s,
        "\nautomatic remediation    {} of {} incidents ({}) without a human, {} approved; {} verified fixes",
        o.automatic,
        o.incidents,
        pct(o.automatic, o.incidents),
        o.approved,
        o.verified_fixes
    );
    let _ = writeln!(
        s,
        "wrong-action signals     {} ({} undos, {} verification failures); {} execution failures",
        o.wrong_action_signals, o.undos, o.verification_failures, o.execution_failures
    );
    let _ = writeln!(
        s,
        "human time saved         {:.0} minutes ({} min per manual fix, {} per approval)",
        o.minutes_saved, r.minutes_per_fix, r.minutes_per_approval
    );
    let _ = writeln!(
        s,
        "records                  {} incident records, {} actions ({} auto, {} approval required), {} escalations, {} results",
        r.records.incident_records,
        r.records.actions,
        r.records.auto_actions,
        r.records.approval_required_actions,
        r.records.escalations,
        r.records.results
    );
    if r.held_back.is_empty() {
        let _ = writeln!(s, "held back                nothing");
    } else {
        let _ = writeln!(s, "held back (where to invest to automate more):");
        let shown = &r.held_back[..r.held_back.len().min(20)];
        let w = shown
            .iter()
            .map(|h| h.service.chars().count())
            .max()
            .unwrap_or(0);
        for h in shown {
            let _ = writeln!(
                s,
                "  {:>3} x {:<20} {:<w$}  {}",
                h.incidents,
                h.category.as_str(),
                h.service,
                h.reason
            );
        }
        if r.held_back.len() > 20 {
            let _ = writeln!(s, "  ... {} more", r.held_back.len() - 20);
        }
    }
    s
}

/// The report as pretty JSON.
pub fn json(r: &ValueReport) -> String {
    // Plain data with string keys: encoding cannot fail.
    serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".into())
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const COLORS: [(&str, &str); 4] = [
    ("automatic", "#2f9e44"),
    ("approved", "#1c7ed6"),
    ("escalated", "#f08c00"),
    ("unhandled", "#adb5bd"),
];

fn handling_count(r: &Row, h: Handling) -> usize {
    match h {
        Handling::Automatic => r.automatic,
        Handling::Approved => r.approved,
        Handling::Escalated => r.escalated,
        Handling::Unhandled => r.unhandled,
    }
}

/// Stacked horizontal bars: how each category's incidents were handled.
pub fn handling_chart(r: &ValueReport) -> String {
    let rows: Vec<(&str, &Row)> = r.categories.iter().map(|(c, x)| (c.as_str(), x)).collect();
    let max = rows
        .iter()
        .map(|(_, x)| x.incidents)
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, h) = (170.0, 420.0, 22.0);
    let height = 40.0 + h * rows.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"incidents by handling\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\">",
        w = label_w + bar_w + 60.0
    );
    for (k, (name, _)) in COLORS.iter().enumerate() {
        let x = label_w + k as f64 * 105.0;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"14\" font-size=\"12\">{name}</text>",
            COLORS[k].1,
            x + 16.0
        );
    }
    for (i, (name, row)) in rows.iter().enumerate() {
        let y = 30.0 + h * i as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + 14.0,
            escape(name)
        );
        let mut x = label_w;
        for (k, hd) in Handling::ALL.iter().enumerate() {
            let n = handling_count(row, *hd);
            if n == 0 {
                continue;
            }
            let w = bar_w * n as f64 / max as f64;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"><title>{}: {n} {}</title></rect>",
                h - 6.0,
                COLORS[k].1,
                escape(name),
                hd.as_str()
            );
            x += w;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
            x + 6.0,
            y + 14.0,
            row.incidents
        );
    }
    s.push_str("</svg>");
    s
}

/// Grouped horizontal bars: median and p90 time to detect and to recover per category.
pub fn timing_chart(r: &ValueReport) -> String {
    let rows: Vec<(&str, &Row)> = r.categories.iter().map(|(c, x)| (c.as_str(), x)).collect();
    let max = rows
        .iter()
        .flat_map(|(_, x)| [x.time_to_recover.p90_ms, x.time_to_detect.p90_ms])
        .flatten()
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, h) = (170.0, 420.0, 34.0);
    let height = 40.0 + h * rows.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"time to detect and recover\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\">",
        w = label_w + bar_w + 120.0
    );
    let legend = [
        ("detect p50 (p90 faint)", "#7048e8"),
        ("recover p50 (p90 faint)", "#0ca678"),
    ];
    for (k, (name, color)) in legend.iter().enumerate() {
        let x = label_w + k as f64 * 200.0;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"14\" font-size=\"12\">{name}</text>",
            x + 16.0
        );
    }
    for (i, (name, row)) in rows.iter().enumerate() {
        let y = 28.0 + h * i as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + 18.0,
            escape(name)
        );
        for (k, (qv, color)) in [
            (&row.time_to_detect, legend[0].1),
            (&row.time_to_recover, legend[1].1),
        ]
        .iter()
        .enumerate()
        {
            let yy = y + 2.0 + k as f64 * 14.0;
            if let Some(p90) = qv.p90_ms {
                let w = bar_w * p90 as f64 / max as f64;
                let _ = write!(
                    s,
                    "<rect x=\"{label_w}\" y=\"{yy}\" width=\"{w:.1}\" height=\"11\" fill=\"{color}\" fill-opacity=\"0.3\"/>"
                );
            }
            if let Some(m) = qv.median_ms {
                let w = bar_w * m as f64 / max as f64;
                let _ = write!(
                    s,
                    "<rect x=\"{label_w}\" y=\"{yy}\" width=\"{w:.1}\" height=\"11\" fill=\"{color}\"><title>{} {}: median {}, p90 {}</title></rect>",
                    escape(name),
                    if k == 0 { "detect" } else { "recover" },
                    mins(qv.median_ms),
                    mins(qv.p90_ms)
                );
            }
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
                label_w + bar_w + 6.0,
                yy + 10.0,
                q(qv)
            );
        }
    }
    s.push_str("</svg>");
    s
}

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212529;background:#fff}h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}.sub{color:#6c757d}.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.kpi{border:1px solid #dee2e6;border-radius:8px;padding:10px 14px;min-width:130px}.kpi b{display:block;font-size:22px}table{border-collapse:collapse}td,th{border-bottom:1px solid #e9ecef;padding:4px 10px;text-align:right;white-space:nowrap}td:first-child,th:first-child{text-align:left}tr.total td{font-weight:600;border-top:2px solid #adb5bd}";

/// One self-contained HTML page: KPIs, both charts, the table, the held-back list.
pub fn html(r: &ValueReport) -> String {
    let o = &r.overall;
    let mut s = String::with_capacity(16 * 1024);
    s.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>reflex value report</title><style>");
    s.push_str(CSS);
    s.push_str("</style></head><body><h1>reflex value report</h1>");
    let _ = write!(
        s,
        "<div class=\"sub\">{} incidents{}{} (event time)</div>",
        o.incidents,
        r.from.map_or(String::new(), |f| format!(
            " from {}",
            escape(&f.to_rfc3339())
        )),
        r.until.map_or(String::new(), |u| format!(
            " to {}",
            escape(&u.to_rfc3339())
        ))
    );
    let kpis = [
        ("incidents", o.incidents.to_string()),
        (
            "fixed without a human",
            format!("{} ({})", o.automatic, pct(o.automatic, o.incidents)),
        ),
        ("approved", o.approved.to_string()),
        ("escalated", o.escalated.to_string()),
        ("verified fixes", o.verified_fixes.to_string()),
        (
            "wrong-action signals",
            format!("{} ({} undos)", o.wrong_action_signals, o.undos),
        ),
        ("detect p50 / p90", q(&o.time_to_detect)),
        ("recover p50 / p90", q(&o.time_to_recover)),
        ("human minutes saved", format!("{:.0}", o.minutes_saved)),
    ];
    s.push_str("<div class=\"kpis\">");
    for (k, v) in kpis {
        let _ = write!(
            s,
            "<div class=\"kpi\" data-kpi=\"{}\"><b>{}</b>{}</div>",
            escape(k),
            escape(&v),
            escape(k)
        );
    }
    s.push_str("</div><h2>How incidents were handled</h2>");
    s.push_str(&handling_chart(r));
    s.push_str("<h2>Time to detect and to recover</h2>");
    s.push_str(&timing_chart(r));
    s.push_str("<h2>Per category</h2><table id=\"categories\"><thead><tr>");
    for h in HEADERS {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr></thead><tbody>");
    let mut all: Vec<(String, &Row, bool)> = r
        .categories
        .iter()
        .map(|(c, x)| (c.as_str().to_string(), x, false))
        .collect();
    all.push(("all".into(), o, true));
    for (name, row, total) in all {
        let _ = write!(s, "<tr{}>", if total { " class=\"total\"" } else { "" });
        for c in row_cells(&name, row) {
            let _ = write!(s, "<td>{}</td>", escape(&c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table><h2>Held back by policy or low confidence</h2>");
    if r.held_back.is_empty() {
        s.push_str("<p>Nothing was held back.</p>");
    } else {
        s.push_str("<table id=\"held\"><thead><tr><th>category</th><th>service</th><th>reason</th><th>incidents</th></tr></thead><tbody>");
        for h in &r.held_back {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                h.category.as_str(),
                escape(&h.service),
                escape(&h.reason),
                h.incidents
            );
        }
        s.push_str("</tbody></table>");
    }
    let _ = writeln!(
        s,
        "<p class=\"sub\">Minutes saved: {} per automatic verified fix, {} less per approved one. Wrong-action signals: undos and executed steps that did not fix the incident. Generated by reflex from its own records.</p></body></html>",
        r.minutes_per_fix, r.minutes_per_approval
    );
    s
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[test]
    fn html_is_self_contained_and_escapes_record_text() {
        let mut rec = Records::default();
        let mut i = crate::model::Incident {
            incident_id: "i1".into(),
            status: crate::model::IncidentStatus::Open,
            opened_at: EventTime(0),
            updated_at: EventTime(60_000),
            resolved_at: None,
            root_cause_service: "<script>x</script>".into(),
            category: Category::Overload,
            confidence: 0.5,
            services: vec![],
            summary: String::new(),
            evidence: vec![],
            namespace: None,
            severity: crate::model::Severity::Error,
        };
        rec.incidents.push(i.clone());
        i.status = crate::model::IncidentStatus::Updated;
        rec.incidents.push(i);
        rec.escalations.push(crate::model::Escalation {
            escalation_id: "e".into(),
            incident_id: "i1".into(),
            created_at: EventTime(60_000),
            severity: crate::model::Severity::Error,
            reason: "held by guard flap: x".into(),
            team: None,
            summary: String::new(),
            suggested_actions: vec![],
        });
        let r = compute(&rec, &ReportOptions::default());
        let h = html(&r);
        assert!(!h.contains("<script"), "record text must be escaped");
        assert!(h.contains("&lt;script&gt;"));
        for external in ["src=", "href=", "@import", "url("] {
            assert!(!h.contains(external), "{external} would fetch from outside");
        }
        assert_eq!(h.matches("<svg").count(), 2);
        assert!(h.contains("guard:flap"));
        let t = text(&r);
        assert!(t.contains("overload"));
        assert!(t.contains("guard:flap"));
        assert!(t.lines().any(|l| l.starts_with("all ")), "{t}");
    }
}
