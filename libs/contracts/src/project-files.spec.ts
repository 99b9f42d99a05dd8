import { fileByteLength, fileBytes, fileFromBytes, isBase64, projectFileSchema } from './project-files';
import { templateFiles, TEMPLATE_TYPES } from './templates';

/** The wire shape of a project file and its helpers: text `{ path, content }`, bytes `{ path, content: <base64>, encoding: 'base64' }`. */
describe('project files: text or bytes', () => {
  const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

  it('fileFromBytes keeps UTF-8 text as text and anything else as base64, byte for byte', () => {
    expect(fileFromBytes('a.js', Buffer.from('héllo ✓'))).toEqual({ path: 'a.js', content: 'héllo ✓' });
    // A byte-order mark is part of the file: kept, not stripped.
    expect(fileBytes(fileFromBytes('bom.css', Buffer.from([0xef, 0xbb, 0xbf, 0x61])))).toEqual(Buffer.from([0xef, 0xbb, 0xbf, 0x61]));
    for (const bytes of [everyByte, Buffer.from([0x61, 0x00, 0x62]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80])]) {
      const file = fileFromBytes('x.bin', bytes);
      expect(file.encoding).toBe('base64');
      expect(fileBytes(file).equals(bytes)).toBe(true);
      expect(fileByteLength(file)).toBe(bytes.length);
    }
  });

  it('counts real bytes: UTF-8 for text, decoded length for base64', () => {
    expect(fileByteLength({ content: '€' })).toBe(3);
    for (const n of [0, 1, 2, 3, 4, 255, 256]) expect(fileByteLength({ content: Buffer.alloc(n).toString('base64'), encoding: 'base64' })).toBe(n);
  });

  it('isBase64 takes standard padded base64 only', () => {
    for (const ok of ['', 'AA==', 'AAA=', 'AAAA', everyByte.toString('base64')]) expect(isBase64(ok)).toBe(true);
    for (const bad of ['A', 'AA', 'AAA', 'A===', '====', 'AA=A', 'AA-_', 'AA\nAA==', ' AAAA']) expect(isBase64(bad)).toBe(false);
  });

  it('projectFileSchema refuses a binary file whose content is not base64, naming content', () => {
    expect(projectFileSchema.safeParse({ path: 'a', content: 'x' }).success).toBe(true);
    expect(projectFileSchema.safeParse({ path: 'a', content: 'x', encoding: 'utf8' }).success).toBe(false);
    const bad = projectFileSchema.safeParse({ path: 'a', content: 'x', encoding: 'base64' });
    expect(bad.error?.issues[0].path).toEqual(['content']);
  });

  it.each(TEMPLATE_TYPES)('the %s template reads as files of that shape', (type) => {
    for (const file of templateFiles(type)) expect(projectFileSchema.safeParse(file).success).toBe(true);
  });
});
