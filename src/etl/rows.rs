//! Frames read row by row: a column's values (`Rows`, what every per-row pass of the ETL
//! reads through), and whole measurements back from a Bronze or Silver frame (the alert engine
//! and `replay` read frames this way).

use super::frame::Columns;
use super::EtlError;
use crate::domain::measurement::{DeviceStatus, Measurement, Vitals};
use crate::domain::time::UtcMillis;
use crate::domain::QualityFlag;
use crate::output::uuid_column::uuid_from_bytes;
use polars::prelude::*;
use polars_arrow::array::Array as _;
use std::sync::Arc;
use uuid::Uuid;

/// A column read row by row. `ChunkedArray::get` searches for the row's chunk on every call,
/// walking the chunks from the first (a tenth of the alert engine's time over a day of Silver);
/// a column of one chunk, which is what Silver's columns are, is read straight from its array,
/// and a column of several (Bronze as read, a chunk per row group) finds a row's chunk by a
/// binary search over where each starts.
pub(crate) enum Rows<'a, T: PolarsDataType> {
    One(&'a T::Array),
    /// Each chunk's first row and its array, in row order.
    Chunks(Vec<(usize, &'a T::Array)>),
}

impl<'a, T: PolarsDataType> Rows<'a, T> {
    pub(crate) fn new(ca: &'a ChunkedArray<T>) -> Self {
        match ca.downcast_iter().next() {
            Some(array) if ca.chunks().len() == 1 => Rows::One(array),
            _ => {
                let mut start = 0;
                Rows::Chunks(
                    ca.downcast_iter()
                        .map(|array| {
                            let first = start;
                            start += array.len();
                            (first, array)
                        })
                        .collect(),
                )
            }
        }
    }

    /// Row `i`'s array and its index in it; `None` past the end.
    fn locate(&self, i: usize) -> Option<(&'a T::Array, usize)> {
        match self {
            Rows::One(a) => (i < a.len()).then_some((*a, i)),
            Rows::Chunks(chunks) => {
                let k = chunks
                    .partition_point(|(first, _)| *first <= i)
                    .checked_sub(1)?;
                let (first, array) = chunks[k];
                (i - first < array.len()).then_some((array, i - first))
            }
        }
    }
}

impl<'a, T: PolarsNumericType> Rows<'a, T> {
    pub(crate) fn get(&self, i: usize) -> Option<T::Native> {
        let (a, j) = self.locate(i)?;
        (!a.is_null(j)).then(|| a.value(j))
    }
}

impl Rows<'_, BooleanType> {
    pub(crate) fn flag(&self, i: usize) -> Option<bool> {
        let (a, j) = self.locate(i)?;
        (!a.is_null(j)).then(|| a.value(j))
    }
}

impl<'a> Rows<'a, StringType> {
    pub(crate) fn text(&self, i: usize) -> Option<&'a str> {
        let (a, j) = self.locate(i)?;
        a.get(j)
    }
}

impl<'a> Rows<'a, BinaryType> {
    pub(crate) fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        let (a, j) = self.locate(i)?;
        a.get(j)
    }
}

/// A column of ids read row by row, as it was written: 16 bytes (Parquet's UUID type, which
/// Polars reads as `Binary`: what kidjamo writes) or text (lakes written before that, and
/// files from other writers).
pub(crate) enum IdRows<'a> {
    Bytes(Rows<'a, BinaryType>),
    Text(Rows<'a, StringType>),
}

impl<'a> IdRows<'a> {
    pub(crate) fn text(ca: &'a StringChunked) -> Self {
        IdRows::Text(Rows::new(ca))
    }

    pub(crate) fn bytes(ca: &'a BinaryChunked) -> Self {
        IdRows::Bytes(Rows::new(ca))
    }

    /// Row `i`'s id; `None` when it is null or not an id.
    pub(crate) fn id(&self, i: usize) -> Option<Uuid> {
        match self {
            IdRows::Bytes(rows) => rows.bytes(i).and_then(uuid_from_bytes),
            IdRows::Text(rows) => rows.text(i).and_then(|s| Uuid::try_parse(s).ok()),
        }
    }
}

/// The vital and weather readings of a Bronze or Silver frame, fetched once.
pub(crate) struct VitalRows<'a> {
    pub spo2: Rows<'a, Float64Type>,
    pub heart_rate: Rows<'a, Int16Type>,
    pub respiratory_rate: Rows<'a, Int16Type>,
    pub temperature: Rows<'a, Float64Type>,
    pub ambient: Rows<'a, Float64Type>,
    pub humidity: Rows<'a, Float64Type>,
    pub hydration: Rows<'a, Float64Type>,
}

impl<'a> VitalRows<'a> {
    pub(crate) fn new(c: &Columns<'a>) -> Result<Self, EtlError> {
        Ok(VitalRows {
            spo2: Rows::new(c.f64("spo2_pct")?),
            heart_rate: Rows::new(c.i16("heart_rate_bpm")?),
            respiratory_rate: Rows::new(c.i16("respiratory_rate_min")?),
            temperature: Rows::new(c.f64("temperature_c")?),
            ambient: Rows::new(c.f64("ambient_temperature_c")?),
            humidity: Rows::new(c.f64("relative_humidity_pct")?),
            hydration: Rows::new(c.f64("hydration_pct")?),
        })
    }
}

/// Values of the previous row that the next one usually repeats (a patient's device and its
/// firmware change rarely): kept between calls so that a repeat costs a comparison, not a
/// UUID parse or an allocation.
#[derive(Default)]
pub struct Repeats<'a> {
    firmware: Option<Arc<str>>,
    device: Option<(&'a str, Uuid)>,
}

/// The columns of a Bronze or Silver frame that make up a measurement, fetched once.
pub struct MeasurementRows<'a> {
    /// Absent from frames the caller does not need ids from.
    message_id: Option<IdRows<'a>>,
    pub patient: &'a StringChunked,
    device: Rows<'a, StringType>,
    recorded: Rows<'a, Int64Type>,
    vitals: VitalRows<'a>,
    activity: Rows<'a, Int16Type>,
    pain: Rows<'a, Int16Type>,
    battery: Rows<'a, Int16Type>,
    signal: Rows<'a, Int16Type>,
    firmware: Rows<'a, StringType>,
    quality: Rows<'a, StringType>,
}

impl<'a> MeasurementRows<'a> {
    /// Also reads `message_id` (the engine does not need it; `replay` does).
    pub fn with_message_ids(c: &Columns<'a>) -> Result<Self, EtlError> {
        Ok(MeasurementRows {
            message_id: Some(c.ids("message_id")?),
            ..Self::new(c)?
        })
    }

    pub fn new(c: &Columns<'a>) -> Result<Self, EtlError> {
        Ok(MeasurementRows {
            message_id: None,
            patient: c.str("patient_id")?,
            device: Rows::new(c.str("device_id")?),
            recorded: Rows::new(c.millis("recorded_at")?),
            vitals: VitalRows::new(c)?,
            activity: Rows::new(c.i16("activity_level")?),
            pain: Rows::new(c.i16("pain_scale")?),
            battery: Rows::new(c.i16("battery_pct")?),
            signal: Rows::new(c.i16("signal_quality_pct")?),
            firmware: Rows::new(c.str("firmware_version")?),
            quality: Rows::new(c.str("quality_flag")?),
        })
    }

    /// Rows were validated on the way in: unparsable values cannot occur here.
    pub fn measurement(
        &self,
        i: usize,
        patient_id: Uuid,
        repeats: &mut Repeats<'a>,
    ) -> Measurement {
        let parse = |text: Option<&str>| {
            text.and_then(|s| Uuid::try_parse(s).ok())
                .unwrap_or_default()
        };
        let fw = self.firmware.text(i);
        if repeats.firmware.as_deref() != fw {
            repeats.firmware = fw.map(Arc::from);
        }
        let device_text = self.device.text(i);
        let device_id = match (repeats.device, device_text) {
            (Some((text, id)), Some(now)) if text == now => id,
            (_, now) => {
                let id = parse(now);
                repeats.device = now.map(|text| (text, id));
                id
            }
        };
        let int = |ca: &Rows<'a, Int16Type>| ca.get(i).map(i32::from);
        Measurement {
            schema_version: 1,
            // Parsed only when asked for: the engine does not read it, and it is a third of
            // the row's decoding.
            message_id: self
                .message_id
                .as_ref()
                .and_then(|ids| ids.id(i))
                .unwrap_or_default(),
            patient_id,
            device_id,
            recorded_at: UtcMillis(self.recorded.get(i).unwrap_or_default()),
            vitals: Vitals {
                spo2_pct: self.vitals.spo2.get(i),
                heart_rate_bpm: int(&self.vitals.heart_rate),
                respiratory_rate_min: int(&self.vitals.respiratory_rate),
                temperature_c: self.vitals.temperature.get(i),
                ambient_temperature_c: self.vitals.ambient.get(i),
                relative_humidity_pct: self.vitals.humidity.get(i),
                hydration_pct: self.vitals.hydration.get(i),
                activity_level: int(&self.activity),
                pain_scale: int(&self.pain),
            },
            device: DeviceStatus {
                battery_pct: int(&self.battery),
                signal_quality_pct: int(&self.signal),
                firmware_version: repeats.firmware.clone(),
            },
            quality_flag: self
                .quality
                .text(i)
                .and_then(|q| q.parse().ok())
                .unwrap_or(QualityFlag::DeviceError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_of_several_chunks_reads_as_one() {
        let mut numbers = Int64Chunked::from_slice("".into(), &[0, 1, 2]);
        numbers
            .append(&Int64Chunked::from_slice("".into(), &[]))
            .ok();
        numbers
            .append(&Int64Chunked::from_iter_options(
                "".into(),
                [Some(3), None].into_iter(),
            ))
            .ok();
        numbers
            .append(&Int64Chunked::from_slice("".into(), &[5]))
            .ok();
        let mut texts = StringChunked::from_slice("".into(), &["a"]);
        texts
            .append(&StringChunked::from_slice("".into(), &["b", "c"]))
            .ok();
        let (numbers_read, texts_read) = (Rows::new(&numbers), Rows::new(&texts));
        assert!(matches!(numbers_read, Rows::Chunks(_)));
        let read: Vec<Option<i64>> = (0..7).map(|i| numbers_read.get(i)).collect();
        assert_eq!(
            read,
            [Some(0), Some(1), Some(2), Some(3), None, Some(5), None]
        );
        let read: Vec<Option<&str>> = (0..4).map(|i| texts_read.text(i)).collect();
        assert_eq!(read, [Some("a"), Some("b"), Some("c"), None]);
        let one = Int64Chunked::from_slice("".into(), &[7]);
        assert_eq!(
            (Rows::new(&one).get(0), Rows::new(&one).get(1)),
            (Some(7), None)
        );
    }
}
