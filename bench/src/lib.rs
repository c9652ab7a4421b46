//! The benchmark harness's parts, shared with the fault tests in `tests/`: fast fakes of the
//! Microsoft endpoints ([`fake`]), a minimal control-socket client ([`ctl`]), and seeding many
//! links straight into a stopped daemon's state ([`seed`]).

pub mod ctl;
pub mod fake;
pub mod seed;
