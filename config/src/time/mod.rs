//! Time as users write it: durations (`24h`, `90d`), cron schedules, and maintenance windows.

mod blackout;
mod duration;
mod rate;
mod schedule;
mod window;

pub use blackout::{Blackout, BlackoutTime, blackout_at, next_start, parse_local};
pub use duration::{Duration, DurationError};
pub use rate::RateLimit;
pub use schedule::{Schedule, ScheduleError};
pub use window::{MaintenanceWindow, WindowError, next_due_in_windows};
