mod errors;
mod interface;
mod job_mgr;
mod types;
