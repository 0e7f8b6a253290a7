mod erc20;
mod governance;
