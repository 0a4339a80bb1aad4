//! Kubernetes' CEL regex library: `find` and `findAll` on strings (RE2 syntax, as the `regex`
//! crate reads it; `matches` is in the standard library).

use std::sync::Arc;

use cel::extractors::{Arguments, This};
use cel::{Context, ExecutionError, Value};

/// Adds `find` and `findAll` to `context`.
pub fn register(context: &mut Context<'_, '_>) {
    let find = context.add_function("find", find);
    let find_all = context.add_function("findAll", find_all);
    debug_assert!(find.is_ok() && find_all.is_ok());
}

fn compile(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|e| {
        ExecutionError::function_error(function, format!("invalid regular expression: {e}"))
    })
}

/// `'abc 123'.find('[0-9]+')`: the first match, or `''`.
fn find(This(s): This<Arc<String>>, pattern: Arc<String>) -> Result<Value, ExecutionError> {
    let re = compile("find", &pattern)?;
    Ok(Value::from(re.find(&s).map_or("", |m| m.as_str())))
}

/// `'1 2 3'.findAll('[0-9]')` and `findAll(pattern, n)`: every match, or at most `n` of them
/// (all of them when `n` is negative).
fn find_all(
    This(s): This<Arc<String>>,
    Arguments(args): Arguments,
) -> Result<Value, ExecutionError> {
    let (pattern, limit) = match args.as_slice() {
        [Value::String(p)] => (p, -1),
        [Value::String(p), Value::Int(n)] => (p, *n),
        _ => {
            return Err(ExecutionError::function_error(
                "findAll",
                "expected a pattern and an optional count",
            ));
        }
    };
    let re = compile("findAll", pattern)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(Value::List(Arc::new(
        re.find_iter(&s)
            .take(limit)
            .map(|m| Value::from(m.as_str()))
            .collect(),
    )))
}

#[cfg(test)]
mod tests {
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
    fn find_returns_the_first_match_or_an_empty_string() {
        check("'abc 123 456'.find('[0-9]+') == '123'", Ok(true));
        check("'abc'.find('[0-9]+') == ''", Ok(true));
        check("'abc'.matches('^a')", Ok(true));
    }

    #[test]
    fn find_all_returns_every_match_up_to_a_count() {
        check(
            "'1 22 333'.findAll('[0-9]+') == ['1', '22', '333']",
            Ok(true),
        );
        check("'1 22 333'.findAll('[0-9]+', 2) == ['1', '22']", Ok(true));
        check("'abc'.findAll('x') == []", Ok(true));
    }

    #[test]
    fn a_bad_pattern_is_an_evaluation_error() {
        check("'abc'.find('(') == ''", Err("invalid regular expression"));
    }
}
