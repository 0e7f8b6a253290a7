mod cdc_pool;
mod errors;
mod interface;
mod types;
