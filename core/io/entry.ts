import { pathToFileURL } from 'node:url';

/** true when the module with this import.meta.url is the process's entry script. */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1];
  return script !== undefined && pathToFileURL(script).href === moduleUrl;
}
