mod errors;
mod interface;
mod test_token;
