#!/usr/bin/env node
// `npx velocity-preview <command> [options]` (start, stop, extend, list, logs, help):
// the command-line client (scripts/preview.ts), run through @swc-node/register like every script here.
'use strict';
const path = require('node:path');

const root = path.join(__dirname, '..');
// swc-node reads the project's tsconfig from the working directory unless told where it is.
process.env.SWC_NODE_PROJECT = process.env.SWC_NODE_PROJECT || path.join(root, 'tsconfig.json');
require('@swc-node/register');
require(path.join(root, 'scripts', 'preview.ts'));
