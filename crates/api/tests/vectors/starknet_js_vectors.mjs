// Computes, with starknet.js, the SNIP-12 message hashes of a signed coordinator request and of
// a worker receipt, and signs the request hash: the vectors `tests/snip12_vectors.rs` checks the
// Rust encoding against. The typed data is built here from the field values, independently of
// the Rust code, and written beside the hashes.
//
//   npm i starknet@10.8.0   (in any directory; then run with NODE_PATH=<it>/node_modules)
//   node crates/api/tests/vectors/starknet_js_vectors.mjs
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(join(process.env.NODE_PATH ?? '.', 'x.js'));
const { typedData, shortString, ec } = require('starknet');
const version = JSON.parse(readFileSync(join(process.env.NODE_PATH ?? 'node_modules', 'starknet', 'package.json'))).version;
const here = dirname(fileURLToPath(import.meta.url));

const sha256u256 = (text) => {
  const hex = createHash('sha256').update(text).digest('hex');
  return { low: '0x' + BigInt('0x' + hex.slice(32)).toString(16), high: '0x' + BigInt('0x' + hex.slice(0, 32)).toString(16) };
};
const domainType = [
  { name: 'name', type: 'shortstring' },
  { name: 'version', type: 'shortstring' },
  { name: 'chainId', type: 'shortstring' },
  { name: 'revision', type: 'shortstring' },
];
const chainId = shortString.encodeShortString('SN_SEPOLIA');
const account = '0x5a6f4bd3f4f2b3c5c1f7a1a6e0b6d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c';

const request = {
  types: {
    StarknetDomain: domainType,
    Request: [
      { name: 'Job Manager', type: 'ContractAddress' },
      { name: 'Coordinator', type: 'string' },
      { name: 'Method', type: 'shortstring' },
      { name: 'Path', type: 'string' },
      { name: 'Body SHA-256', type: 'u256' },
      { name: 'Timestamp', type: 'timestamp' },
      { name: 'Nonce', type: 'felt' },
    ],
  },
  primaryType: 'Request',
  domain: { name: 'CIRO Coordinator', version: '1', chainId, revision: '1' },
  message: {
    'Job Manager': '0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d',
    Coordinator: 'https://coordinator.ciro.example',
    Method: 'PUT',
    Path: '/v1/jobs/42/output/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    'Body SHA-256': sha256u256('output bytes'),
    Timestamp: 1750000000,
    Nonce: '0x5f1e2d3c4b5a69788796a5b4c3d2e1f0',
  },
};

const receipt = {
  types: {
    StarknetDomain: domainType,
    Receipt: [
      { name: 'Job Manager', type: 'ContractAddress' },
      { name: 'Job Id', type: 'u128' },
      { name: 'Model Hash', type: 'u256' },
      { name: 'Input Hash', type: 'u256' },
      { name: 'Output Hash', type: 'u256' },
      { name: 'Device', type: 'string' },
      { name: 'Libtorch', type: 'string' },
      { name: 'CUDA', type: 'string' },
      { name: 'Deterministic', type: 'bool' },
      { name: 'Seed', type: 'u128' },
      { name: 'Started At', type: 'timestamp' },
      { name: 'Finished At', type: 'timestamp' },
      { name: 'Model Load Ms', type: 'u128' },
      { name: 'Inference Ms', type: 'u128' },
    ],
  },
  primaryType: 'Receipt',
  domain: { name: 'CIRO Receipt', version: '1', chainId, revision: '1' },
  message: {
    'Job Manager': '0x4718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d',
    'Job Id': 42,
    'Model Hash': sha256u256('model'),
    'Input Hash': sha256u256('input'),
    'Output Hash': sha256u256('output'),
    Device: 'NVIDIA H100 80GB HBM3 (compute capability 9.0)',
    Libtorch: '2.11.0',
    CUDA: '12.8',
    Deterministic: true,
    Seed: 1234,
    'Started At': 1750000000,
    'Finished At': 1750000003,
    'Model Load Ms': 850,
    'Inference Ms': 1234,
  },
};

const privateKey = '0x5eed';
const requestHash = typedData.getMessageHash(request, account);
const signature = ec.starkCurve.sign(requestHash, privateKey);
const vectors = {
  starknet_js: version,
  account,
  request_hash: requestHash,
  receipt_hash: typedData.getMessageHash(receipt, account),
  private_key: privateKey,
  public_key: ec.starkCurve.getStarkKey(privateKey),
  request_signature: ['0x' + signature.r.toString(16), '0x' + signature.s.toString(16)],
};
writeFileSync(join(here, 'request.typed_data.json'), JSON.stringify(request, null, 2) + '\n');
writeFileSync(join(here, 'receipt.typed_data.json'), JSON.stringify(receipt, null, 2) + '\n');
writeFileSync(join(here, 'starknet_js.json'), JSON.stringify(vectors, null, 2) + '\n');
console.log(vectors);
