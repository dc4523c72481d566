//! The name grammars shared by configuration, catalog and wire messages, so that a name valid
//! in one place is valid everywhere it travels.
//!
//! ```text
//! config name   = ALNUM *62( ALNUM / "_" / "-" )            ; stores, services, environments, segments
//! catalog name  = ( ALNUM / "_" ) *62( ALNUM / "_" / "." / "-" )  ; credential kinds, fields, policies
//! variable name = ( ALPHA / "_" ) *( ALNUM / "_" )           ; environment variables
//! ```

/// Checks a name users choose in dsops.yaml (store, service, environment, segment).
pub fn check_config_name(value: &str, what: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else if value.is_empty() {
        Err(format!("the {what} name is empty"))
    } else {
        Err(format!(
            "{what} name {value:?} must be 1-63 letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// Checks a catalog name (credential kind, policy, principal, store field).
pub fn check_catalog_name(value: &str, what: &str) -> Result<(), String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else if value.is_empty() {
        Err(format!("the {what} is empty"))
    } else {
        Err(format!(
            "{what} {value:?} must be 1-63 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"
        ))
    }
}

/// Checks an environment variable name.
pub fn check_variable_name(value: &str) -> Result<(), String> {
    let valid = value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid environment variable name (letters, digits and '_', not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammars() {
        assert!(check_config_name("pg-prod_1", "service").is_ok());
        assert!(check_config_name("my.store", "store").is_err());
        assert!(check_config_name("_x", "store").is_err());
        assert!(check_config_name(&"a".repeat(64), "store").is_err());
        assert!(check_catalog_name("db_password", "kind").is_ok());
        assert!(check_catalog_name("_x.y-z", "kind").is_ok());
        assert!(check_catalog_name("-x", "kind").is_err());
        assert!(check_variable_name("DB_PASSWORD").is_ok());
        assert!(check_variable_name("9LIVES").is_err());
        assert!(check_variable_name("A-B").is_err());
    }
}
