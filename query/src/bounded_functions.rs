//! Functions whose output size is chosen by their arguments, bounded. DataFusion's `repeat`,
//! `lpad`, `rpad`, `range`, `generate_series` (as an array) and `array_repeat` allocate their
//! result outside the query's memory pool: `repeat('x', 2147483647)` asks for 2 GiB at once,
//! and `repeat(arrow_cast('x', 'LargeUtf8'), 1000000000000)` for a terabyte through Rust's
//! infallible allocation, which aborts the whole service. Each is replaced, under its own name,
//! by a wrapper that estimates the output from the arguments and refuses it over a bound
//! before calling the original.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, TimeUnit,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry as _;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output grows with its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes times n.
    Repeat,
    /// `lpad`/`rpad(text, n[, fill])`: n characters (4 bytes each at most).
    Pad,
    /// `range`/`generate_series(start, stop[, step])`: (stop - start) / step elements.
    Series,
    /// `array_repeat(element, n)`: n elements.
    ArrayRepeat,
}

const BOUNDED: [(&str, Growth); 6] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
    ("array_repeat", Growth::ArrayRepeat),
];

/// Replaces the functions of `BOUNDED` in `ctx` by wrappers refusing an output over
/// `max_bytes` (for all the rows of a batch together).
pub fn register(ctx: &SessionContext, max_bytes: usize) {
    for (name, growth) in BOUNDED {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                growth,
                max_bytes,
            }));
        }
    }
}

#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    max_bytes: usize,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name() && self.max_bytes == other.max_bytes
    }
}

impl Eq for Bounded {}

impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.max_bytes.hash(state);
    }
}

/// An argument's values as i64, for each of `rows` (a scalar stands for every row).
fn integers(value: &ColumnarValue, rows: usize) -> Result<Vec<Option<i64>>> {
    let array: ArrayRef = value.to_array(rows.max(1))?;
    let array = cast(&array, &DataType::Int64)?;
    let ints = array.as_primitive::<Int64Type>();
    Ok((0..ints.len())
        .map(|i| (!ints.is_null(i)).then(|| ints.value(i)))
        .collect())
}

/// Instants (dates, timestamps) as nanoseconds, and numbers as themselves.
fn positions(value: &ColumnarValue, rows: usize) -> Result<Vec<Option<i64>>> {
    let array = value.to_array(rows.max(1))?;
    let array = match array.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => {
            cast(&array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?
        }
        _ => array,
    };
    integers(&ColumnarValue::Array(array), rows)
}

/// A step as a number, or an interval as (approximate) nanoseconds: a month is 28 days, the
/// shortest, so that the estimate never falls short.
fn steps(value: &ColumnarValue, rows: usize) -> Result<Vec<Option<i64>>> {
    let array = value.to_array(rows.max(1))?;
    if let DataType::Interval(_) = array.data_type() {
        let interval = cast(
            &array,
            &DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
        )?;
        let interval = interval.as_primitive::<IntervalMonthDayNanoType>();
        return Ok((0..interval.len())
            .map(|i| {
                (!interval.is_null(i)).then(|| {
                    let v = interval.value(i);
                    i64::from(v.months) * 28 * 86_400_000_000_000
                        + i64::from(v.days) * 86_400_000_000_000
                        + v.nanoseconds
                })
            })
            .collect());
    }
    integers(&ColumnarValue::Array(array), rows)
}

/// The largest text of an argument, in bytes, for each row.
fn text_lengths(value: &ColumnarValue, rows: usize) -> Result<Vec<usize>> {
    let array = value.to_array(rows.max(1))?;
    let array = cast(&array, &DataType::LargeUtf8)?;
    let texts = array.as_string::<i64>();
    Ok((0..texts.len())
        .map(|i| {
            if texts.is_null(i) {
                0
            } else {
                texts.value(i).len()
            }
        })
        .collect())
}

impl Bounded {
    /// The bytes the call would produce, estimated from its arguments.
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<u128> {
        let total = |counts: Vec<Option<i64>>, unit: Vec<usize>| -> u128 {
            counts
                .iter()
                .zip(
                    unit.iter()
                        .chain(std::iter::repeat(&unit.last().copied().unwrap_or(1))),
                )
                .map(|(n, unit)| u128::from(n.unwrap_or(0).max(0) as u64) * (*unit as u128))
                .sum()
        };
        Ok(match self.growth {
            Growth::Repeat if args.len() >= 2 => {
                total(integers(&args[1], rows)?, text_lengths(&args[0], rows)?)
            }
            Growth::Pad if args.len() >= 2 => total(integers(&args[1], rows)?, vec![4]),
            Growth::ArrayRepeat if args.len() >= 2 => total(integers(&args[1], rows)?, vec![16]),
            Growth::Series if !args.is_empty() => {
                let (start, stop) = if args.len() == 1 {
                    (vec![Some(0); rows.max(1)], positions(&args[0], rows)?)
                } else {
                    (positions(&args[0], rows)?, positions(&args[1], rows)?)
                };
                let step = match args.get(2) {
                    Some(step) => steps(step, rows)?,
                    None => vec![Some(1); start.len()],
                };
                let counts = start
                    .iter()
                    .zip(&stop)
                    .zip(step.iter().chain(std::iter::repeat(&Some(1))))
                    .map(|((a, b), s)| match (a, b, s) {
                        (Some(a), Some(b), Some(s)) if *s != 0 => {
                            Some((i128::from(*b) - i128::from(*a)).abs() / i128::from(*s).abs() + 1)
                        }
                        _ => Some(0),
                    })
                    .map(|n| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
                    .collect();
                total(counts, vec![8])
            }
            _ => 0,
        })
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let estimate = self.estimate(&args.args, args.number_rows)?;
        if estimate > self.max_bytes as u128 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}: the result would take about {estimate} bytes, over the {} bytes a call may produce",
                self.inner.name(),
                self.max_bytes
            )));
        }
        self.inner.invoke_with_args(args)
    }
}
