//! Kubernetes' CEL list library (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`)
//! and its `sets` library (`sets.contains`, `sets.equivalent`, `sets.intersects`).

use std::cmp::Ordering;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::extractors::{Arguments, This};
use cel::{Context, DeclarationError, Env, ExecutionError, Value};

type Result<T> = std::result::Result<T, ExecutionError>;

/// Declares `indexOf` and `lastIndexOf` on lists: the strings extension declares the same
/// names on strings, so these must be overloads of the environment rather than functions.
pub fn overloads(env: &mut Env) -> std::result::Result<(), DeclarationError> {
    env.add_member_overload(
        "indexOf",
        "list_indexOf",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_lastIndexOf",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )
}

/// Adds the list and sets functions to `context`.
pub fn register(context: &mut Context<'_, '_>) {
    for (name, result) in [
        ("isSorted", context.add_function("isSorted", is_sorted)),
        ("sum", context.add_function("sum", sum)),
        ("min", context.add_function("min", min)),
        ("max", context.add_function("max", max)),
        (
            "sets.contains",
            context.add_function("sets.contains", contains),
        ),
        (
            "sets.equivalent",
            context.add_function("sets.equivalent", equivalent),
        ),
        (
            "sets.intersects",
            context.add_function("sets.intersects", intersects),
        ),
    ] {
        debug_assert!(result.is_ok(), "{name} is declared twice");
    }
}

fn values<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<Vec<Value>> {
    args.iter().map(|a| Value::try_from(a.as_ref())).collect()
}

fn position(args: Vec<CowVal<'_, '_>>, last: bool) -> Result<i64> {
    let [list, item]: [Value; 2] = values(args)?
        .try_into()
        .map_err(|a: Vec<Value>| ExecutionError::invalid_argument_count(2, a.len()))?;
    let Value::List(list) = list else {
        return Err(ExecutionError::function_error("indexOf", "not a list"));
    };
    let found = if last {
        list.iter().rposition(|x| *x == item)
    } else {
        list.iter().position(|x| *x == item)
    };
    Ok(found.map_or(-1, |i| i as i64))
}

fn owned<'b, 'v>(value: Value) -> Result<CowVal<'b, 'v>> {
    let val: Box<dyn Val> = value.try_into()?;
    Ok(CowVal::Owned(val))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>> {
    owned(Value::Int(position(args, false)?))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>> {
    owned(Value::Int(position(args, true)?))
}

fn compare(function: &str, a: &Value, b: &Value) -> Result<Ordering> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::function_error(function, format!("{a:?} and {b:?} are not comparable"))
    })
}

/// `[1, 2, 2].isSorted()`: whether every element is at most the next one.
fn is_sorted(This(list): This<Arc<Vec<Value>>>) -> Result<bool> {
    for pair in list.windows(2) {
        if compare("isSorted", &pair[0], &pair[1])? == Ordering::Greater {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `[1, 2].sum()`: the sum of ints, uints or doubles; `0` for an empty list.
fn sum(This(list): This<Arc<Vec<Value>>>) -> Result<Value> {
    let mut total = match list.first() {
        None => return Ok(Value::Int(0)),
        Some(Value::Int(_)) => Value::Int(0),
        Some(Value::UInt(_)) => Value::UInt(0),
        Some(Value::Float(_)) => Value::Float(0.0),
        Some(other) => {
            return Err(ExecutionError::function_error(
                "sum",
                format!("cannot sum {:?}", other.type_of()),
            ));
        }
    };
    for item in list.iter() {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => Value::Int(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (Value::UInt(a), Value::UInt(b)) => Value::UInt(
                a.checked_add(*b)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            ),
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            _ => {
                return Err(ExecutionError::function_error(
                    "sum",
                    "list elements must all be of one numeric type",
                ));
            }
        };
    }
    Ok(total)
}

fn extreme(function: &str, list: &[Value], want: Ordering) -> Result<Value> {
    let Some(mut best) = list.first() else {
        return Err(ExecutionError::function_error(
            function,
            format!("{function} called on an empty list"),
        ));
    };
    for item in &list[1..] {
        if compare(function, item, best)? == want {
            best = item;
        }
    }
    Ok(best.clone())
}

/// The elements `min` and `max` choose from: the list of `[3, 1].min()`, the list of
/// `min([3, 1])`, or the arguments of `min(3, 1)`.
fn candidates(this: Value, args: &[Value]) -> Vec<Value> {
    match (this, args) {
        (Value::List(list), []) => list.to_vec(),
        (_, [Value::List(list)]) => list.to_vec(),
        (this, []) => vec![this],
        (_, args) => args.to_vec(),
    }
}

/// `[3, 1].min()`.
fn min(This(this): This<Value>, Arguments(args): Arguments) -> Result<Value> {
    extreme("min", &candidates(this, &args), Ordering::Less)
}

/// `[3, 1].max()`.
fn max(This(this): This<Value>, Arguments(args): Arguments) -> Result<Value> {
    extreme("max", &candidates(this, &args), Ordering::Greater)
}

/// `sets.contains(a, b)`: every element of `b` is in `a`.
fn contains(a: Arc<Vec<Value>>, b: Arc<Vec<Value>>) -> bool {
    b.iter().all(|x| a.contains(x))
}

/// `sets.equivalent(a, b)`: `a` and `b` hold the same elements.
fn equivalent(a: Arc<Vec<Value>>, b: Arc<Vec<Value>>) -> bool {
    contains(Arc::clone(&a), Arc::clone(&b)) && contains(b, a)
}

/// `sets.intersects(a, b)`: `a` and `b` share an element.
fn intersects(a: Arc<Vec<Value>>, b: Arc<Vec<Value>>) -> bool {
    b.iter().any(|x| a.contains(x))
}

#[cfg(test)]
mod tests {
    use crate::cel::{Activation, compile, evaluate_bool};

    fn check(expression: &str, expected: std::result::Result<bool, &str>) {
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
    fn list_functions_answer_as_kubernetes_does() {
        for (expression, expected) in [
            ("[1, 2, 2, 3].isSorted()", true),
            ("[3, 1].isSorted()", false),
            ("['a', 'b'].isSorted()", true),
            ("[].isSorted()", true),
            ("[1, 2, 3].sum() == 6", true),
            ("[1.5, 2.5].sum() == 4.0", true),
            ("[].sum() == 0", true),
            ("[3, 1, 2].min() == 1", true),
            ("[3, 1, 2].max() == 3", true),
            ("['b', 'a'].min() == 'a'", true),
            ("[1, 2, 3, 2].indexOf(2) == 1", true),
            ("[1, 2, 3, 2].lastIndexOf(2) == 3", true),
            ("[1, 2].indexOf(9) == -1", true),
            ("'abcb'.indexOf('b') == 1", true),
            ("'abcb'.lastIndexOf('b') == 3", true),
        ] {
            check(expression, Ok(expected));
        }
    }

    #[test]
    fn list_functions_refuse_what_they_cannot_compute() {
        check("[].min() == 0", Err("empty list"));
        check("[1, 'a'].sum() == 0", Err("one numeric type"));
    }

    #[test]
    fn sets_compare_lists_as_sets() {
        check("sets.contains([1, 2, 3], [3, 1])", Ok(true));
        check("sets.contains([1, 2], [4])", Ok(false));
        check("sets.equivalent([1, 2, 2], [2, 1])", Ok(true));
        check("sets.intersects([1, 2], [2, 5])", Ok(true));
        check("sets.intersects([1], [5])", Ok(false));
    }
}
