import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { PermanentError } from './errors';
import { fileFromBytes, type ProjectFile } from './project-files';

/** Starter projects, one folder each under libs/contracts/templates. */
export const TEMPLATE_TYPES = ['react', 'vue', 'svelte', 'vanilla-ts'] as const;
export type TemplateType = (typeof TEMPLATE_TYPES)[number];
export const DEFAULT_TEMPLATE: TemplateType = 'react';

const TEMPLATES_DIR = join(__dirname, '..', 'templates');

export function isTemplateType(value: string): value is TemplateType {
  return (TEMPLATE_TYPES as readonly string[]).includes(value);
}

/** The files of a template; a PermanentError for an unknown type. */
export function templateFiles(type: string): ProjectFile[] {
  if (!isTemplateType(type)) {
    throw new PermanentError(`Unknown template type "${type}"; known: ${TEMPLATE_TYPES.join(', ')}`);
  }
  let files = loaded.get(type);
  if (!files) {
    const root = join(TEMPLATES_DIR, type);
    // Read as bytes: a template's images or fonts become binary files, its sources text.
    files = walk(root).map((file) => fileFromBytes(relative(root, file).split(sep).join('/'), readFileSync(file)));
    loaded.set(type, files);
  }
  return files.map((file) => ({ ...file }));
}

/** Templates ship with the code: read each once per process. */
const loaded = new Map<string, ProjectFile[]>();

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    return entry.isDirectory() ? walk(full) : [full];
  });
}
