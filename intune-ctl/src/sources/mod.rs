//! Where the endpoints come from: the built-in list, the web service, local files, the names
//! resolved on a schedule and the addresses learned from DNS answers. Nothing here touches a
//! map.

pub mod endpoints;
pub mod learn;
pub mod refresh;
pub mod resolve;
pub mod tags_file;
