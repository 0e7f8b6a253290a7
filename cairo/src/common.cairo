mod erc20;
mod governance;
mod packing;
mod types;
