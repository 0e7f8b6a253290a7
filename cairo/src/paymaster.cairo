mod errors;
mod interface;
mod paymaster;
mod types;
