mod erc20;
mod governance;
mod types;
