//! Helpers shared by the three records' Arrow forms: typed column lookup by name and
//! per-cell reads that turn a null or an unknown spelling into an error naming the cell.

use std::str::FromStr;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int16Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Int16Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, TimeUnit};

/// Why a batch does not read back as records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArrowFormError {
    #[error("column `{column}` is missing")]
    MissingColumn { column: &'static str },
    #[error("column `{column}` is {found}, expected {expected}")]
    ColumnType {
        column: &'static str,
        expected: DataType,
        found: DataType,
    },
    #[error("column `{column}` is null at row {row}")]
    Null { column: &'static str, row: usize },
    #[error("column `{column}` row {row}: {reason}")]
    Value {
        column: &'static str,
        row: usize,
        reason: String,
    },
}

type Result<T> = std::result::Result<T, ArrowFormError>;

/// Arrow type of every timestamp column: microseconds in UTC, Delta Lake's `timestamp`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

pub(crate) fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

/// Typed access to a batch's columns by name. A column read back from the lake may come in
/// an equivalent encoding (DataFusion reads strings as `Utf8View`, partition values may be
/// dictionary-encoded): it is cast to the canonical type, and only a column that cannot be is
/// an error.
pub(crate) struct Columns<'a>(pub &'a RecordBatch);

impl Columns<'_> {
    fn column(&self, column: &'static str, expected: DataType) -> Result<ArrayRef> {
        let array = self
            .0
            .column_by_name(column)
            .ok_or(ArrowFormError::MissingColumn { column })?;
        if array.data_type() == &expected {
            return Ok(array.clone());
        }
        let found = array.data_type().clone();
        let equivalent = match &found {
            DataType::Utf8View | DataType::LargeUtf8 => expected == DataType::Utf8,
            DataType::BinaryView | DataType::LargeBinary => expected == DataType::Binary,
            DataType::Dictionary(_, values) => **values == expected,
            DataType::Timestamp(unit, _) => {
                matches!(expected, DataType::Timestamp(want, _) if *unit == want)
            }
            _ => false,
        };
        if !equivalent {
            return Err(ArrowFormError::ColumnType {
                column,
                expected,
                found,
            });
        }
        arrow_cast::cast(array, &expected).map_err(|e| ArrowFormError::Value {
            column,
            row: 0,
            reason: e.to_string(),
        })
    }

    pub fn strings(&self, column: &'static str) -> Result<StringArray> {
        Ok(self
            .column(column, DataType::Utf8)?
            .as_string::<i32>()
            .clone())
    }

    pub fn binaries(&self, column: &'static str) -> Result<BinaryArray> {
        Ok(self
            .column(column, DataType::Binary)?
            .as_binary::<i32>()
            .clone())
    }

    pub fn i64s(&self, column: &'static str) -> Result<Int64Array> {
        Ok(self
            .column(column, DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone())
    }

    pub fn i16s(&self, column: &'static str) -> Result<Int16Array> {
        Ok(self
            .column(column, DataType::Int16)?
            .as_primitive::<Int16Type>()
            .clone())
    }

    pub fn bools(&self, column: &'static str) -> Result<BooleanArray> {
        Ok(self.column(column, DataType::Boolean)?.as_boolean().clone())
    }

    pub fn dates(&self, column: &'static str) -> Result<Date32Array> {
        Ok(self
            .column(column, DataType::Date32)?
            .as_primitive::<Date32Type>()
            .clone())
    }

    pub fn timestamps(&self, column: &'static str) -> Result<TimestampMicrosecondArray> {
        Ok(self
            .column(column, timestamp_type())?
            .as_primitive::<TimestampMicrosecondType>()
            .clone())
    }
}

/// The cell at a row, or `None` where it is null.
pub(crate) trait CellAt {
    type Value<'a>
    where
        Self: 'a;
    fn at(&self, row: usize) -> Option<Self::Value<'_>>;
}

macro_rules! cell_at {
    ($array:ty => $value:ty) => {
        impl CellAt for $array {
            type Value<'a> = $value;
            fn at(&self, row: usize) -> Option<Self::Value<'_>> {
                self.is_valid(row).then(|| self.value(row))
            }
        }
    };
}

cell_at!(StringArray => &'a str);
cell_at!(BinaryArray => &'a [u8]);
cell_at!(Int64Array => i64);
cell_at!(Int16Array => i16);
cell_at!(BooleanArray => bool);
cell_at!(Date32Array => i32);
cell_at!(TimestampMicrosecondArray => i64);

/// A cell that must not be null.
pub(crate) fn required<T>(column: &'static str, row: usize, value: Option<T>) -> Result<T> {
    value.ok_or(ArrowFormError::Null { column, row })
}

/// A nullable cell parsed with `FromStr` (vocabularies, pseudonyms, key ids).
pub(crate) fn parsed<T: FromStr>(
    column: &'static str,
    row: usize,
    text: Option<&str>,
) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    text.map(|text| {
        text.parse().map_err(|e: T::Err| ArrowFormError::Value {
            column,
            row,
            reason: e.to_string(),
        })
    })
    .transpose()
}
