//! Kubernetes' CEL quantity library: `quantity('1.5Gi')`, `isQuantity(s)`, and on quantities
//! `sign()`, `isInteger()`, `asInteger()`, `asApproximateFloat()`, `add()`, `sub()`,
//! `compareTo()`, `isGreaterThan()`, `isLessThan()`; `==` compares amounts.
//!
//! Amounts are held exactly, in billionths (`1n`), so comparisons are exact where
//! [`crate::quantity`]'s floating-point parse would round.

use std::cmp::Ordering;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{Context, ExecutionError, Value};

/// A resource quantity, in billionths of a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses Kubernetes' quantity syntax: a signed decimal number and a suffix (`m`, `k`,
    /// `Mi`, `e3`, ...). Amounts finer than `1n` round up, as Kubernetes does.
    pub fn parse(s: &str) -> Option<Quantity> {
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (negative, digits) = match number.as_bytes().first()? {
            b'-' => (true, &number[1..]),
            b'+' => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
            || whole.len() + fraction.len() > 30
        {
            return None;
        }
        let mantissa: i128 = format!("{whole}{fraction}0").parse::<i128>().ok()? / 10;
        let scale = fraction.len() as i32;
        // The amount is mantissa × 10^-scale × factor, factor = 2^binary × 10^decimal.
        let (binary, decimal) = match suffix {
            "" => (0, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            e if e.starts_with(['e', 'E']) && e.len() > 1 => (0, e[1..].parse::<i32>().ok()?),
            _ => return None,
        };
        let exponent = decimal + 9 - scale;
        let mut value = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
        if exponent >= 0 {
            value = value.checked_mul(10i128.checked_pow(exponent as u32)?)?;
        } else {
            let divisor = 10i128
                .checked_pow(exponent.unsigned_abs())
                .unwrap_or(i128::MAX);
            value = value / divisor + i128::from(value % divisor != 0);
        }
        Some(Quantity(if negative { -value } else { value }))
    }

    fn from_int(i: i64) -> Quantity {
        Quantity(i128::from(i) * NANO)
    }
}

/// Adds the quantity functions to `context`.
pub fn register(context: &mut Context<'_, '_>) {
    let results = [
        context.add_function("quantity", quantity),
        context.add_function("isQuantity", |s: Arc<String>| Quantity::parse(&s).is_some()),
        context.add_function("sign", |This(q): This<Arc<dyn Opaque>>| {
            Ok::<_, ExecutionError>(Value::Int(this(&q, "sign")?.0.signum() as i64))
        }),
        context.add_function("isInteger", |This(q): This<Arc<dyn Opaque>>| {
            let q = this(&q, "isInteger")?;
            Ok::<_, ExecutionError>(Value::Bool(
                q.0 % NANO == 0 && i64::try_from(q.0 / NANO).is_ok(),
            ))
        }),
        context.add_function("asInteger", as_integer),
        context.add_function("asApproximateFloat", |This(q): This<Arc<dyn Opaque>>| {
            let q = this(&q, "asApproximateFloat")?;
            Ok::<_, ExecutionError>(Value::Float(q.0 as f64 / NANO as f64))
        }),
        context.add_function("add", |This(q): This<Arc<dyn Opaque>>, other: Value| {
            arithmetic(&q, &other, "add", i128::checked_add)
        }),
        context.add_function("sub", |This(q): This<Arc<dyn Opaque>>, other: Value| {
            arithmetic(&q, &other, "sub", i128::checked_sub)
        }),
        context.add_function(
            "compareTo",
            |This(q): This<Arc<dyn Opaque>>, other: Value| {
                let ordering = compare(&q, &other, "compareTo")?;
                Ok::<_, ExecutionError>(Value::Int(ordering as i64))
            },
        ),
        context.add_function(
            "isGreaterThan",
            |This(q): This<Arc<dyn Opaque>>, other: Value| {
                Ok::<_, ExecutionError>(Value::Bool(
                    compare(&q, &other, "isGreaterThan")? == Ordering::Greater,
                ))
            },
        ),
        context.add_function(
            "isLessThan",
            |This(q): This<Arc<dyn Opaque>>, other: Value| {
                Ok::<_, ExecutionError>(Value::Bool(
                    compare(&q, &other, "isLessThan")? == Ordering::Less,
                ))
            },
        ),
    ];
    debug_assert!(results.iter().all(Result::is_ok));
}

fn quantity(s: Arc<String>) -> Result<Value, ExecutionError> {
    Quantity::parse(&s)
        .map(|q| Value::Opaque(Arc::new(q)))
        .ok_or_else(|| {
            ExecutionError::function_error("quantity", format!("invalid quantity: {s:?}"))
        })
}

fn this(q: &Arc<dyn Opaque>, function: &str) -> Result<Quantity, ExecutionError> {
    q.downcast_ref::<Quantity>()
        .copied()
        .ok_or_else(|| ExecutionError::function_error(function, "receiver is not a quantity"))
}

fn operand(v: &Value, function: &str) -> Result<Quantity, ExecutionError> {
    match v {
        Value::Opaque(o) => this(o, function),
        Value::Int(i) => Ok(Quantity::from_int(*i)),
        _ => Err(ExecutionError::function_error(
            function,
            "argument must be a quantity or an int",
        )),
    }
}

fn compare(q: &Arc<dyn Opaque>, other: &Value, function: &str) -> Result<Ordering, ExecutionError> {
    Ok(this(q, function)?.cmp(&operand(other, function)?))
}

fn arithmetic(
    q: &Arc<dyn Opaque>,
    other: &Value,
    function: &str,
    op: fn(i128, i128) -> Option<i128>,
) -> Result<Value, ExecutionError> {
    let sum = op(this(q, function)?.0, operand(other, function)?.0)
        .ok_or_else(|| ExecutionError::function_error(function, "overflow"))?;
    Ok(Value::Opaque(Arc::new(Quantity(sum))))
}

fn as_integer(This(q): This<Arc<dyn Opaque>>) -> Result<Value, ExecutionError> {
    let q = this(&q, "asInteger")?;
    if q.0 % NANO != 0 {
        return Err(ExecutionError::function_error(
            "asInteger",
            "cannot convert value to integer",
        ));
    }
    i64::try_from(q.0 / NANO)
        .map(Value::Int)
        .map_err(|_| ExecutionError::function_error("asInteger", "cannot convert value to integer"))
}

#[cfg(test)]
mod tests {
    use super::Quantity;
    use crate::cel::{Activation, compile, evaluate_bool};

    fn check(expression: &str, expected: Result<bool, &str>) {
        let got = compile(expression, &[]).and_then(|p| evaluate_bool(&p, &Activation::new()));
        match expected {
            Ok(b) => assert_eq!(got, Ok(b), "{expression}"),
            Err(text) => {
                let err = got.expect_err(expression).to_string();
                assert!(err.contains(text), "{expression}: {err}");
            }
        }
    }

    #[test]
    fn quantities_parse_exactly() {
        for (text, nanos) in [
            ("1", Some(1_000_000_000)),
            ("100m", Some(100_000_000)),
            ("1.5Gi", Some(1_610_612_736_000_000_000)),
            ("1e3", Some(1_000_000_000_000)),
            ("-2k", Some(-2_000_000_000_000)),
            ("0.1n", Some(1)),
            ("1x", None),
            ("", None),
            ("Gi", None),
        ] {
            assert_eq!(Quantity::parse(text).map(|q| q.0), nanos, "{text}");
        }
    }

    #[test]
    fn quantity_functions_answer_as_kubernetes_does() {
        for expression in [
            "isQuantity('1Gi')",
            "!isQuantity('1 Gi')",
            "quantity('1Gi').isGreaterThan(quantity('1000Mi'))",
            "quantity('500m').isLessThan(quantity('1'))",
            "quantity('1k').compareTo(quantity('1000')) == 0",
            "quantity('2').compareTo(quantity('3')) == -1",
            "quantity('1Gi') == quantity('1024Mi')",
            "quantity('1.5').isInteger() == false",
            "quantity('2k').asInteger() == 2000",
            "quantity('500m').asApproximateFloat() == 0.5",
            "quantity('1').add(quantity('500m')) == quantity('1500m')",
            "quantity('1').add(2) == quantity('3')",
            "quantity('1').sub(quantity('2')).sign() == -1",
        ] {
            check(expression, Ok(true));
        }
    }

    #[test]
    fn bad_quantities_are_evaluation_errors() {
        check("quantity('abc').sign() == 1", Err("invalid quantity"));
        check("quantity('1.5').asInteger() == 1", Err("cannot convert"));
    }
}
