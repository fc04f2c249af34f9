//! The contract: what lifostore promises, the words it uses, the public names users compile
//! against, and the tests that check each promise. The same text is `docs/CONTRACT.md` in the
//! repository.
//!
#![doc = include_str!("../docs/CONTRACT.md")]
