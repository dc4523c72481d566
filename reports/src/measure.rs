//! Each control's status and evidence text, from the measures the standard's table names.

use crate::build::{Item, Rotation};
use crate::model::ControlRow;
use crate::standards::{Measure, Standard};

/// A measure's outcome: how many items pass of how many it applies to, and the sentence.
struct Outcome {
    passed: usize,
    of: usize,
    text: String,
}

fn class_name(class: Option<&str>) -> String {
    class.map_or_else(String::new, |c| format!("{c}-class "))
}

/// Charsets whose values mix letters and digits.
const MIXED: [&str; 5] = ["alphanumeric", "hex", "base64", "base64url", "ascii-printable"];

fn measure(measure: Measure, items: &[Item], rotations: &[Rotation]) -> Outcome {
    match measure {
        Measure::WithinInterval { class, cap_days } => {
            let mut passed = 0;
            let mut of = 0;
            for row in items.iter().map(|i| &i.row).filter(|r| class.is_none_or(|c| r.class == c)) {
                let limit = match (row.required_days, cap_days) {
                    (Some(req), Some(cap)) => req.min(f64::from(cap)),
                    (Some(req), None) => req,
                    (None, Some(cap)) => f64::from(cap),
                    (None, None) => continue,
                };
                of += 1;
                if row.age_days.is_some_and(|age| age <= limit) {
                    passed += 1;
                }
            }
            let within = match cap_days {
                Some(cap) => format!("within {cap} days or their policy's maximum if shorter"),
                None => "within their required interval".to_owned(),
            };
            Outcome {
                passed,
                of,
                text: format!("{passed} of {of} {}secrets rotated {within}", class_name(class)),
            }
        }
        Measure::Complexity { class, min_length } => {
            let generated: Vec<_> = items
                .iter()
                .filter(|i| class.is_none_or(|c| i.row.class == c))
                .filter_map(|i| i.generated.as_ref())
                .collect();
            let passed = generated
                .iter()
                .filter(|(length, charset)| {
                    *length >= min_length && MIXED.contains(&charset.as_str())
                })
                .count();
            Outcome {
                passed,
                of: generated.len(),
                text: format!(
                    "{passed} of {} {}values dsops generates are at least {min_length} \
                     characters of letters and digits",
                    generated.len(),
                    class_name(class)
                ),
            }
        }
        Measure::ByReference => Outcome {
            passed: items.len(),
            of: items.len(),
            text: format!(
                "all {} values are read from secret stores by reference; the configuration \
                 and the control plane hold no value",
                items.len()
            ),
        },
        Measure::Approved => {
            let needed: Vec<_> = rotations.iter().filter(|r| r.needed_approval).collect();
            let passed = needed.iter().filter(|r| r.granted || r.row.break_glass).count();
            let signed: usize = needed.iter().map(|r| r.row.approvers.len()).sum();
            Outcome {
                passed,
                of: needed.len(),
                text: format!(
                    "{passed} of {} rotations that needed approval had it ({signed} signed \
                     approvals, or break-glass); every other rotation was requested by an \
                     operator holding the rotate role or by a schedule an admin applied",
                    needed.len()
                ),
            }
        }
        Measure::BreakGlassReviewed => {
            let broke: Vec<_> = rotations.iter().filter(|r| r.row.break_glass).collect();
            let passed = broke.iter().filter(|r| !r.review_open).count();
            Outcome {
                passed,
                of: broke.len(),
                text: format!(
                    "{passed} of {} break-glass rotations have a closed review",
                    broke.len()
                ),
            }
        }
        Measure::Verified => {
            let completed: Vec<_> =
                rotations.iter().filter(|r| r.row.result == "completed").collect();
            let untargeted = completed.iter().filter(|r| r.row.verification == "no_target").count();
            let checked: Vec<_> =
                completed.iter().filter(|r| r.row.verification != "no_target").collect();
            let passed = checked
                .iter()
                .filter(|r| r.row.verification == "passed" && r.row.receipt_sha256.is_some())
                .count();
            let mut text = format!(
                "{passed} of {} completed rotations of a target passed verification against it, \
                 with signed agent receipts",
                checked.len()
            );
            if untargeted > 0 {
                text.push_str(&format!(
                    " ({untargeted} more rotated values with no target, which have nothing to \
                     verify against)"
                ));
            }
            Outcome { passed, of: checked.len(), text }
        }
    }
}

/// The standard's controls with their status over these items and rotations.
pub(crate) fn controls(
    standard: Standard,
    items: &[Item],
    rotations: &[Rotation],
) -> Vec<ControlRow> {
    standard
        .controls()
        .iter()
        .map(|control| {
            let outcomes: Vec<Outcome> =
                control.measures.iter().map(|m| measure(*m, items, rotations)).collect();
            let status = if outcomes.iter().all(|o| o.of == 0) {
                "not_applicable"
            } else if outcomes.iter().all(|o| o.passed == o.of) {
                "met"
            } else {
                "exceptions"
            };
            let evidence: Vec<String> = outcomes.into_iter().map(|o| o.text).collect();
            ControlRow {
                control: control.id.to_owned(),
                requirement: control.requirement.to_owned(),
                evidence: evidence.join("; "),
                status: status.to_owned(),
            }
        })
        .collect()
}
