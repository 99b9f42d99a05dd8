// No imports: the preview machine loads this too, and nothing else of the service's contracts.

/** `react-dom/client` → `react-dom`, `@scope/pkg/sub` → `@scope/pkg`; undefined for a relative or absolute path. */
export function packageNameOf(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('/')) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? (parts.length >= 2 ? parts.slice(0, 2).join('/') : undefined) : parts[0];
}
