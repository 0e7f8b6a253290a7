// Drives the relayer with the real starknet.js client (PaymasterRpc and Account), as a dapp
// would; prints one JSON object with what it saw. Run by tests/starknet_js.rs.
const path = require('path');
const sn = require(path.join(process.env.CIRO_STARKNET_JS_DIR, 'node_modules', 'starknet'));

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const json = (value) =>
  JSON.parse(JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : v)));

(async () => {
  const out = { version: require(path.join(process.env.CIRO_STARKNET_JS_DIR, 'node_modules', 'starknet', 'package.json')).version };
  const paymaster = new sn.PaymasterRpc({
    nodeUrl: env('RELAYER_URL'),
    headers: { 'x-paymaster-api-key': env('API_KEY') },
  });
  out.available = await paymaster.isAvailable();
  out.tokens = json(await paymaster.getSupportedTokens());
  const calls = [
    {
      contractAddress: env('TOKEN'),
      entrypoint: 'transfer',
      calldata: sn.CallData.compile({ recipient: env('RECIPIENT'), amount: sn.cairo.uint256(env('AMOUNT')) }),
    },
  ];
  const built = await paymaster.buildTransaction(
    { type: 'invoke', invoke: { userAddress: env('USER_ADDRESS'), calls } },
    { version: '0x1', feeMode: { mode: 'sponsored' } },
  );
  out.built = json(built);
  // A refusal comes back as an RpcError with the SNIP-29 code.
  try {
    await paymaster.buildTransaction(
      { type: 'invoke', invoke: { userAddress: env('USER_ADDRESS'), calls: [{ ...calls[0], entrypoint: 'transfer_from' }] } },
      { version: '0x1', feeMode: { mode: 'sponsored' } },
    );
    out.refused = null;
  } catch (error) {
    out.refused = { code: error.baseError && error.baseError.code, data: error.baseError && error.baseError.data, unknown: error.isType && error.isType('UNKNOWN_ERROR') };
  }
  // The whole flow through an Account: build, the client's own safety checks, sign, execute.
  const provider = new sn.RpcProvider({ nodeUrl: env('RPC_URL') });
  const account = new sn.Account({ provider, address: env('USER_ADDRESS'), signer: env('USER_KEY'), paymaster });
  const executed = await account.executePaymasterTransaction(calls, { feeMode: { mode: 'sponsored' } });
  out.transaction_hash = executed.transaction_hash;
  // A new account: deployed by the relayer with its first call (deploy_and_invoke), the
  // deployment data in SNIP-29's ACCOUNT_DEPLOYMENT_DATA shape.
  if (process.env.NEW_ADDRESS) {
    const newcomer = new sn.Account({ provider, address: env('NEW_ADDRESS'), signer: env('NEW_KEY'), paymaster });
    const deploymentData = {
      address: env('NEW_ADDRESS'),
      class_hash: env('NEW_CLASS'),
      salt: env('NEW_SALT'),
      calldata: [env('NEW_PUBLIC_KEY')],
      version: 1,
    };
    const deployed = await newcomer.executePaymasterTransaction(calls, { feeMode: { mode: 'sponsored' }, deploymentData });
    out.deploy_transaction_hash = deployed.transaction_hash;
  }
  console.log(JSON.stringify(out));
})().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
