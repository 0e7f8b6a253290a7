mod errors;
mod interface;
mod paymaster;
