pub use freshet_log as log;
