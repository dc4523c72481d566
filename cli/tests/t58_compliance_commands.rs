//! `dsops rotation compliance` through the binary on the embedded default, with the PDF read
//! back by poppler (a reader nobody here wrote): `pdftotext` finds the title, the scope, the
//! controls, the secrets and "page N of M"; the population table of 121 secrets breaks across
//! pages with its header row repeated; `pdftoppm` renders the chart page and the bars are there
//! in their colours. HTML carries the chart as inline SVG; CSV, JSON and the sample are checked;
//! bad flags are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // Each test binary uses part of the shared helpers.
mod common;

use std::path::Path;
use std::process::Command;

use common::{dsops_in, stderr, stdout};

fn config() -> String {
    let mut text = String::from(
        "version: 1
secretStores:
  local: { type: file }
policies:
  standard:
    envs: [production]
    maxAge: 30d
envs:
  production:
    API_KEY:
      from: { store: \"store://local/app/api#key\" }
      rotation: { strategy: random, config: { length: 32 } }
",
    );
    for i in 0..120 {
        text.push_str(&format!(
            "    SECRET_{i:03}: {{ from: {{ store: \"store://local/s/{i}#v\" }}, rotation: {{ strategy: random }} }}\n"
        ));
    }
    text
}

fn tool(dir: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let output =
        Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| {
            panic!("{program} (poppler-utils; the test script installs it): {e}")
        });
    assert!(output.status.success(), "{program}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Pixels of `color` in a binary PPM (P6) image.
fn count_color(ppm: &[u8], color: [u8; 3]) -> usize {
    // Header: "P6\n<w> <h>\n255\n", then RGB triples.
    let mut fields = 0;
    let mut at = 0;
    while fields < 4 {
        while ppm[at].is_ascii_whitespace() {
            at += 1;
        }
        while !ppm[at].is_ascii_whitespace() {
            at += 1;
        }
        fields += 1;
    }
    ppm[at + 1..].chunks_exact(3).filter(|p| p == &color).count()
}

#[test]
fn pdf_html_csv_json_and_sample_from_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dsops.yaml"), config()).unwrap();
    let rotated = dsops_in(d, &["rotate", "--env", "production", "--key", "API_KEY"]);
    assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));

    let base = ["rotation", "compliance", "--standard", "pci-dss", "--env", "production"];
    let pdf = dsops_in(d, &[&base[..], &["--export", "pdf", "-o", "report.pdf"]].concat());
    assert_eq!(pdf.status.code(), Some(0), "{}", stderr(&pdf));
    assert!(stderr(&pdf).contains("wrote report.pdf"), "{}", stderr(&pdf));
    let text = String::from_utf8(tool(d, "pdftotext", &["-layout", "report.pdf", "-"])).unwrap();
    for expected in [
        "PCI DSS 4.0.1 compliance report",
        "Environment: production",
        "8.3.9",
        "8.6.3",
        "Secrets by age (days); policy maximum 30 days",
        "API_KEY",
        "SECRET_119",
        "never rotated",
        "page 1 of ",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from the PDF text:\n{text}");
    }
    let pages: usize = text
        .lines()
        .find_map(|l| l.split("page 1 of ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .expect("page 1 of N");
    assert!(pages >= 4, "title, summary and tables over several pages: {pages}");
    assert!(text.contains(&format!("page {pages} of {pages}")));
    assert!(text.contains("Population (continued)"), "the table breaks across pages");
    let headers =
        text.lines().filter(|l| l.contains("Secret") && l.contains("Last rotated")).count();
    assert!(headers >= 2, "the header row is repeated on every page of the table: {headers}");

    // The chart page (2): green bars within the maximum, red for "never".
    tool(d, "pdftoppm", &["-r", "50", "-f", "2", "-l", "2", "report.pdf", "page"]);
    let image = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "ppm"))
        .expect("pdftoppm wrote a page");
    let ppm = std::fs::read(image).unwrap();
    assert!(ppm.starts_with(b"P6"));
    assert!(count_color(&ppm, [46, 125, 50]) > 20, "a green bar (API_KEY, fresh)");
    assert!(count_color(&ppm, [198, 40, 40]) > 200, "a tall red bar (120 never rotated)");

    let html = dsops_in(d, &[&base[..], &["--export", "html"]].concat());
    assert_eq!(html.status.code(), Some(0), "{}", stderr(&html));
    let page = stdout(&html);
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"), "{page}");
    assert!(page.contains("<td>API_KEY</td>") && !page.contains("<script"));

    let csv = dsops_in(d, &[&base[..], &["--export", "csv", "--table", "rotations"]].concat());
    assert_eq!(csv.status.code(), Some(0), "{}", stderr(&csv));
    let lines: Vec<String> = stdout(&csv).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("run,key,start,end,result,initiator"));
    assert!(lines[1].contains(",API_KEY,") && lines[1].contains(",completed,"), "{}", lines[1]);

    let json = dsops_in(d, &[&base[..], &["--output", "json"]].concat());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["summary"]["secrets"], 121);
    assert_eq!(report["summary"]["compliant"], 1);
    assert_eq!(report["summary"]["never_rotated"], 120);
    assert_eq!(report["rotations"][0]["key"], "API_KEY");

    let sample = |seed: &str| {
        let out = dsops_in(
            d,
            &[&base[..], &["--sample", "5", "--seed", seed, "--output", "json"]].concat(),
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(value["summary"]["secrets"], 121, "the summary covers everything");
        value["population"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let first = sample("3");
    assert_eq!(first.len(), 5);
    assert_eq!(first, sample("3"), "the same seed picks the same secrets");
    assert_ne!(first, sample("4"));

    let no_file = dsops_in(d, &[&base[..], &["--export", "pdf"]].concat());
    assert_eq!(no_file.status.code(), Some(2));
    assert!(stderr(&no_file).contains("--export pdf writes a file"), "{}", stderr(&no_file));
    let unknown = dsops_in(
        d,
        &["rotation", "compliance", "--standard", "soc2", "--env", "prod", "--output", "json"],
    );
    assert_ne!(unknown.status.code(), Some(0));
    assert!(
        stderr(&unknown).contains("unknown environment \"prod\"")
            || stdout(&unknown).contains("unknown environment \\\"prod\\\""),
        "{}{}",
        stdout(&unknown),
        stderr(&unknown)
    );
}
