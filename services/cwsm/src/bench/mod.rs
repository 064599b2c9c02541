//! The benchmarks: commands that start their own servers (or stores) and print figures beside
//! their ceilings. Apart from the client commands a person uses (`cli/`), which only parse
//! their arguments and call in here. A benchmark fails nothing: it measures.

pub mod load;
pub mod rank;
pub mod readings;
pub mod report;
