#!/usr/bin/env node
'use strict';
// node bin/ppp-worker.js MODULE --unix PATH [--max-concurrency N]: run a plugin worker.
//
// MODULE is a path (relative to the working directory, e.g. plugins/count_primes) of a module
// that exports a Plugin (module.exports = new Plugin({...}) or module.exports.plugin).

const path = require('node:path');
const { parseArgs } = require('node:util');
const { Plugin, serve } = require('../lib/sdk');

const USAGE = 'usage: node bin/ppp-worker.js MODULE --unix PATH [--max-concurrency N]';

function fail(message, status = 2) {
  console.error(`ppp-node-worker: ${message}\n${USAGE}`);
  process.exit(status);
}

function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: { unix: { type: 'string' }, 'max-concurrency': { type: 'string', default: '4' } },
    });
  } catch (error) {
    fail(error.message);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) fail('give exactly one plugin MODULE');
  if (!values.unix) fail('--unix PATH is required');
  const concurrency = Number(values['max-concurrency']);
  if (!Number.isInteger(concurrency) || concurrency < 1) fail('--max-concurrency must be a positive integer');
  let exported;
  try {
    exported = require(path.resolve(positionals[0]));
  } catch (error) {
    fail(`cannot load ${positionals[0]}: ${error.message}`, 1);
  }
  const plugin = exported instanceof Plugin ? exported : exported?.plugin;
  if (!(plugin instanceof Plugin)) fail(`${positionals[0]} exports no Plugin`, 1);
  serve(plugin, { unix: values.unix, maxConcurrency: concurrency }).catch((error) => {
    console.error(`ppp-node-worker: ${error.message}`);
    process.exit(1);
  });
}

main();
