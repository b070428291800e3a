//! Titles and suggested actions per rule family (reference §2.2, the offline engine's table,
//! translated). Clinicians change this table, not the engine.

use crate::domain::thresholds::Severity;

pub fn title(family: &str, severity: Severity) -> String {
    let what = match family {
        "spo2" => "SpO₂",
        "temperature" => "Body temperature",
        "heart_rate" => "Heart rate",
        "respiratory_rate" => "Respiratory rate",
        "hydration" => "Hydration",
        "heat_index" => "Heat index",
        "ambient" => "Ambient temperature",
        "pain" => "Pain",
        "battery" => "Device battery low",
        "signal" => "Poor sensor signal",
        "flatline" => "Sensor flatline",
        "silent" => "Device silent",
        "C1" => "Fever with hypoxia",
        "C2" => "Respiratory distress",
        "C3" => "Pain with hypoxia (vaso-occlusive crisis)",
        "C4" => "Dehydration in heat with activity",
        "C5" => "Fever with tachypnoea",
        other => other,
    };
    format!("{what} ({})", severity.as_str())
}

pub fn suggested_actions(family: &str, severity: Severity) -> Vec<String> {
    let critical = severity == Severity::Critical;
    let list: &[&str] = match family {
        "spo2" if critical => &[
            "give oxygen now",
            "semi-seated position",
            "call emergency services",
        ],
        "spo2" => &[
            "recheck the sensor fit",
            "watch SpO₂ closely",
            "call the care team if it falls",
        ],
        "temperature" if critical => &[
            "antipyretic as prescribed",
            "urgent infection work-up",
            "contact the clinician now",
        ],
        "temperature" => &[
            "recheck temperature in 30 min",
            "hydrate",
            "contact the care team if fever persists",
        ],
        "heart_rate" if critical => &[
            "ECG",
            "check fluid balance",
            "assess pain",
            "contact the clinician now",
        ],
        "heart_rate" => &["rest and recheck", "assess pain and hydration"],
        "respiratory_rate" if critical => &[
            "blood gas",
            "chest X-ray",
            "oxygen if needed",
            "assess respiratory distress",
        ],
        "respiratory_rate" => &["close monitoring", "comfort and calm the patient"],
        "hydration" if critical => &["IV fluids", "renal watch", "electrolytes"],
        "hydration" => &["drink now", "rest in the shade", "recheck in 1 h"],
        "heat_index" | "ambient" => &[
            "move to a cool area",
            "drink",
            "light clothing",
            "avoid effort",
        ],
        "pain" if critical => &[
            "strong analgesia as prescribed",
            "hydration",
            "assess for a crisis",
            "contact the clinician",
        ],
        "pain" => &["analgesia as prescribed", "hydration", "reassess in 1 h"],
        "C1" => &[
            "medical emergency",
            "oxygen",
            "antipyretic",
            "infection work-up",
        ],
        "C2" => &[
            "high-flow oxygen",
            "seated position",
            "call emergency services",
        ],
        "C3" => &[
            "strong analgesia",
            "oxygen",
            "IV fluids",
            "hospital admission",
        ],
        "C4" => &["stop activity", "cool down", "hydrate", "rest in the shade"],
        "C5" => &[
            "urgent assessment for acute chest syndrome",
            "oxygen if SpO₂ falls",
            "contact the clinician now",
        ],
        "battery" => &["charge the device"],
        "signal" => &["check the sensor position and skin contact"],
        "flatline" => &[
            "check the device: readings are frozen",
            "replace the sensor if it persists",
        ],
        "silent" => &["check that the device is worn, charged and connected"],
        _ => &["review the patient"],
    };
    list.iter().map(|s| s.to_string()).collect()
}
