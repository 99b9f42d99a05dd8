/** A project file as read from a fixture: its bytes. */
export interface FixtureFile {
  path: string;
  content: Buffer;
}

/** Text a JSON body can carry as it is: valid UTF-8 without NUL. */
function asText(bytes: Buffer): string | null {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  return Buffer.from(text, 'utf8').equals(bytes) && !text.includes('\0') ? text : null;
}

/** PUTs one file as an IDE would: text as JSON `{ content }`, anything else as its raw bytes. */
export async function putProjectFile(baseUrl: string, projectId: string, file: FixtureFile): Promise<{ status: number; body: string }> {
  const text = asText(file.content);
  const res = await fetch(`${baseUrl}/v1/projects/${projectId}/files/${file.path.split('/').map(encodeURIComponent).join('/')}`, {
    method: 'PUT',
    headers: { 'content-type': text === null ? 'application/octet-stream' : 'application/json' },
    body: text === null ? new Uint8Array(file.content) : JSON.stringify({ content: text }),
  });
  return { status: res.status, body: await res.text() };
}

/**
 * A project made through the api holding exactly `files`: uploaded file by file,
 * a few at a time, then the template files it was created with that `files`
 * does not name removed, in one change.
 */
export async function uploadProject(baseUrl: string, name: string, templateType: string, files: FixtureFile[]): Promise<string> {
  const res = await fetch(`${baseUrl}/v1/projects`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, templateType }) });
  if (res.status !== 201) throw new Error(`POST /v1/projects answered ${res.status}: ${await res.text()}`);
  const projectId = ((await res.json()) as { id: string }).id;
  const queue = [...files];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let file = queue.shift(); file; file = queue.shift()) {
        const put = await putProjectFile(baseUrl, projectId, file);
        if (put.status !== 200 && put.status !== 201) throw new Error(`PUT ${file.path} answered ${put.status}: ${put.body}`);
      }
    }),
  );
  const wanted = new Set(files.map((file) => file.path));
  const listed = (await (await fetch(`${baseUrl}/v1/projects/${projectId}/files`)).json()) as { files: { path: string }[] };
  const leftover = listed.files.map((file) => file.path).filter((path) => !wanted.has(path));
  if (leftover.length > 0) {
    const removed = await fetch(`${baseUrl}/v1/projects/${projectId}/files`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ delete: leftover }) });
    if (removed.status !== 200) throw new Error(`PATCH (removing the template's files) answered ${removed.status}: ${await removed.text()}`);
  }
  return projectId;
}
