import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKnowledgeBase, loadDocument, splitDocument } from '../../src/rag/index.ts';
import { minimalDocx, minimalPdf, tempFolder } from './fixtures.ts';

describe('loadDocument', () => {
  it('turns HTML headings into a heading path and drops navigation, scripts and link targets', async () => {
    const html = `<html><head><title>Canteen &amp; Shuttle</title><style>p { color: red }</style></head><body>
      <nav>Home | About</nav><h1>Canteen</h1><p>Opens at <b>11:30</b>. See <a href="https://intranet/menu">the menu</a>.</p>
      <h2>Prices</h2><p>Lunch costs ¥15.</p><script>track()</script></body></html>`;
    const doc = await loadDocument('canteen.html', Buffer.from(html));
    expect(doc).toMatchObject({ format: 'html', title: 'Canteen & Shuttle' });
    const chunks = await splitDocument(doc);
    expect(chunks.map((c) => [c.title, c.text])).toEqual([
      ['Canteen', 'Opens at 11:30. See the menu.'],
      ['Canteen > Prices', 'Lunch costs ¥15.'],
    ]);
  });

  it('reads DOCX heading styles as headings', async () => {
    const docx = minimalDocx([
      ['h1', 'IT Guide'],
      ['h2', 'VPN'],
      ['p', 'The VPN client is called Tunnelbee.'],
      ['h2', 'Printers'],
      ['p', 'Printers are on floors 2 & 3.'],
    ]);
    const chunks = await splitDocument(await loadDocument('it-guide.docx', docx));
    expect(chunks.map((c) => [c.title, c.text])).toEqual([
      ['IT Guide > VPN', 'The VPN client is called Tunnelbee.'],
      ['IT Guide > Printers', 'Printers are on floors 2 & 3.'],
    ]);
  });

  it('reads the text layer of a PDF page by page and keeps page numbers', async () => {
    const pdf = minimalPdf([['Travel Policy', 'Book flights at least 14 days ahead.'], ['Hotels are capped at EUR 180 per night.']]);
    const doc = await loadDocument('travel.pdf', pdf);
    expect(doc.title).toBe('Travel Policy');
    const chunks = await splitDocument(doc);
    expect(chunks.map((c) => [c.page, c.position])).toEqual([
      [1, 0],
      [2, 1],
    ]);
    expect(chunks[1]!.text).toBe('Hotels are capped at EUR 180 per night.');
  });

  it('says what is wrong with a file it cannot read', async () => {
    await expect(loadDocument('scan.pdf', Buffer.from('%PDF-1.4 broken'))).rejects.toThrow(/not a readable PDF/);
    await expect(loadDocument('deck.docx', Buffer.from([1, 2, 3]))).rejects.toThrow(/not a readable DOCX/);
    await expect(loadDocument('notes.md', Buffer.from([0xff, 0xfe, 0x00, 0xd8]))).rejects.toThrow(/UTF-8/);
    await expect(loadDocument('slides.pptx', Buffer.from('x'))).rejects.toThrow(/unsupported file type "\.pptx"/);
  });
});

describe('adding every supported format, and URLs', () => {
  let server: Server;
  let base = '';
  beforeAll(async () => {
    // Tests never touch the internet: the "web page" is served from this process.
    server = createServer((req, res) => {
      if (req.url === '/wiki/parking') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end('<html><head><title>Parking</title></head><body><h1>Parking</h1><p>Visitor parking is at gate P3, free for two hours.</p></body></html>');
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('indexes md, txt, html, pdf and docx from nested folders and a URL; bad ones are reported by name', async () => {
    const dir = tempFolder({
      'hr/leave.md': '# Leave\n\n## Annual leave\n\nFull-time staff get 25 days of annual leave.',
      'hr/notes.txt': 'The wellbeing budget is EUR 300 per year.',
      'it/vpn.html': '<h1>VPN</h1><p>The VPN client is called Tunnelbee.</p>',
      'it/guide.docx': minimalDocx([['h1', 'IT Guide'], ['h2', 'Laptops'], ['p', 'Laptops are replaced every three years.']]),
      'travel/policy.pdf': minimalPdf([['Travel Policy', 'Hotels are capped at EUR 180 per night.']]),
      'travel/scan.pdf': '%PDF-1.4 no text layer here',
      'deck.pptx': 'binary',
    });
    const kb = new LocalKnowledgeBase(':memory:');
    const report = await kb.addPaths([dir, `${base}/wiki/parking`, `${base}/missing`]);
    expect(report.added.sort()).toEqual(['hr/leave.md', 'hr/notes.txt', 'it/guide.docx', 'it/vpn.html', `${base}/wiki/parking`, 'travel/policy.pdf'].sort());
    expect(Object.fromEntries(report.failed.map((f) => [f.source, f.reason]))).toEqual({
      'travel/scan.pdf': expect.stringMatching(/not a readable PDF/),
      'deck.pptx': expect.stringMatching(/unsupported file type/),
      [`${base}/missing`]: 'HTTP 404 Not Found',
    });
    const top = async (q: string) => (await kb.search(q, 1))[0];
    expect(await top('how often are laptops replaced')).toMatchObject({ source: 'it/guide.docx', title: 'IT Guide > Laptops' });
    expect(await top('hotel cap per night')).toMatchObject({ source: 'travel/policy.pdf' });
    expect(await top('visitor parking gate')).toMatchObject({ source: `${base}/wiki/parking`, title: 'Parking' });
    expect((await kb.retrieve('hotel cap per night', 1))[0]).toMatchObject({ page: 1, metadata: { format: 'pdf', folder: 'travel', page: 1 } });
    kb.close();
  });
});
