//! Heat index (apparent temperature) from ambient temperature and relative humidity, as the US
//! National Weather Service computes it: Steadman's simple formula below 80 °F, otherwise the
//! Rothfusz regression with its low- and high-humidity adjustments. Inputs and output in °C.

fn c_to_f(c: f64) -> f64 {
    c * 9.0 / 5.0 + 32.0
}

fn f_to_c(f: f64) -> f64 {
    (f - 32.0) * 5.0 / 9.0
}

/// Heat index in °C, `None` when an input is missing or not finite.
pub fn heat_index_c(ambient_c: Option<f64>, relative_humidity_pct: Option<f64>) -> Option<f64> {
    let (t, rh) = (ambient_c?, relative_humidity_pct?);
    if !t.is_finite() || !rh.is_finite() {
        return None;
    }
    Some(f_to_c(heat_index_f(c_to_f(t), rh)))
}

/// The NWS algorithm in °F (wpc.ncep.noaa.gov, "The Heat Index Equation").
pub fn heat_index_f(t: f64, rh: f64) -> f64 {
    let simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094);
    if (simple + t) / 2.0 < 80.0 {
        return simple;
    }
    let mut hi = -42.379 + 2.049_015_23 * t + 10.143_331_27 * rh
        - 0.224_755_41 * t * rh
        - 0.006_837_83 * t * t
        - 0.054_817_17 * rh * rh
        + 0.001_228_74 * t * t * rh
        + 0.000_852_82 * t * rh * rh
        - 0.000_001_99 * t * t * rh * rh;
    if rh < 13.0 && (80.0..=112.0).contains(&t) {
        hi -= ((13.0 - rh) / 4.0) * ((17.0 - (t - 95.0).abs()) / 17.0).sqrt();
    } else if rh > 85.0 && (80.0..=87.0).contains(&t) {
        hi += ((rh - 85.0) / 10.0) * ((87.0 - t) / 5.0);
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values read off the NWS heat index chart (°F, relative humidity %, heat index °F).
    const NWS_CHART: [(f64, f64, f64); 10] = [
        (80.0, 40.0, 80.0),
        (84.0, 60.0, 88.0),
        (86.0, 90.0, 105.0),
        (88.0, 50.0, 91.0),
        (90.0, 40.0, 91.0),
        (90.0, 70.0, 106.0),
        (94.0, 55.0, 106.0),
        (96.0, 65.0, 121.0),
        (100.0, 40.0, 109.0),
        (104.0, 45.0, 124.0),
    ];

    #[test]
    fn heat_index_matches_the_nws_chart() {
        for (t, rh, expected) in NWS_CHART {
            let got = heat_index_f(t, rh);
            assert!(
                (got - expected).abs() <= 1.0,
                "T={t}F RH={rh}%: got {got:.1}, chart {expected}"
            );
        }
    }

    #[test]
    fn heat_index_uses_the_simple_formula_when_cool() {
        // 70 °F at 50 %: Steadman's formula gives 69.05 °F; the regression would not apply.
        let got = heat_index_f(70.0, 50.0);
        assert!((got - 69.05).abs() < 0.01, "{got}");
    }

    #[test]
    fn heat_index_applies_the_humidity_adjustments() {
        // Dry air at 95 °F lowers the index; very humid air at 82 °F raises it.
        let dry = heat_index_f(95.0, 10.0);
        assert!(dry < 92.0, "{dry}");
        let humid = heat_index_f(82.0, 95.0);
        assert!(humid > 90.0, "{humid}");
    }

    #[test]
    fn heat_index_converts_celsius_and_never_invents_inputs() {
        let hi = heat_index_c(Some(32.2), Some(70.0)).expect("both inputs");
        assert!((hi - 41.1).abs() < 0.3, "{hi}");
        assert_eq!(heat_index_c(None, Some(70.0)), None);
        assert_eq!(heat_index_c(Some(30.0), None), None);
    }
}
