/**
 * gemma-nb-lab in a real JupyterLab, on real kernels, with the real default model (Gemma 3
 * 270M, a small base model: its answers are weak, so the tests check what was inserted, not
 * how good it is). Screenshots of each feature go to docs/images/.
 */

import * as fs from 'fs';
import * as path from 'path';

import {
  expect,
  galata,
  IJupyterLabPageFixture,
  test
} from '@jupyterlab/galata';

const IMAGES = path.resolve(__dirname, '..', '..', '..', 'docs', 'images');
const MODEL = /gemma-3-270m/;
// Short answers keep the tests quick on a CPU; the first command also loads the model.
const ANSWER_TIMEOUT = 4 * 60 * 1000;

test.use({
  mockSettings: {
    ...galata.DEFAULT_SETTINGS,
    'gemma-nb-lab:plugin': { maxTokens: 40 }
  }
});

test.beforeAll(() => fs.mkdirSync(IMAGES, { recursive: true }));

interface ICellData {
  type: string;
  source: string;
  metadata: Record<string, any>;
}

/** The current notebook's cells, as its model holds them. */
async function cells(page: IJupyterLabPageFixture): Promise<ICellData[]> {
  return page.evaluate(() => {
    const panel = (window as any).jupyterapp.shell.currentWidget;
    return panel.content.model.sharedModel.cells.map((cell: any) => ({
      type: cell.cell_type,
      source: cell.getSource(),
      metadata: cell.getMetadata()
    }));
  });
}

async function waitForCells(page: IJupyterLabPageFixture, count: number) {
  await expect
    .poll(async () => (await cells(page)).length, { timeout: ANSWER_TIMEOUT })
    .toBe(count);
}

/** Wait until the command's final notice has replaced its progress notice, and is on screen. */
async function noticeSettled(page: IJupyterLabPageFixture, text: string) {
  await expect(
    page.locator('.Toastify__toast', { hasText: text })
  ).toBeInViewport({ ratio: 1 });
  await expect(
    page.locator('.Toastify__toast', {
      hasText: /explaining|fixing|documenting/
    })
  ).toHaveCount(0);
}

/** Errors the page logged (a command must fail with a notice, not in the console). */
function consoleErrors(page: IJupyterLabPageFixture): string[] {
  const errors: string[] = [];
  page.on('console', message => {
    if (message.type() === 'error') {
      errors.push(message.text());
    }
  });
  page.on('pageerror', error => errors.push(error.message));
  return errors;
}

test('a %%gemma cell is highlighted as prompt text, a Python cell as Python', async ({
  page
}) => {
  await page.notebook.createNew('highlight.ipynb', { kernel: 'python3' });
  await page.notebook.setCell(
    0,
    'code',
    '%%gemma --max-tokens 64\n# Explain this error\nWhy does **import numpy** fail in {env}?'
  );
  await page.notebook.addCell('code', '# Explain this error\nimport numpy');

  const prompt = (await page.notebook.getCellLocator(0))!;
  const python = (await page.notebook.getCellLocator(1))!;
  await expect(prompt).toHaveClass(/jp-gemma-nb-promptCell/);
  await expect(python).not.toHaveClass(/jp-gemma-nb-promptCell/);

  // The same line is a Markdown heading (bold) in the prompt and a comment (italic) in Python.
  const heading = prompt
    .locator('.cm-line span', { hasText: 'Explain this error' })
    .last();
  await expect(heading).toHaveCSS('font-weight', '700');
  await expect(heading).toHaveCSS('font-style', 'normal');
  const comment = python
    .locator('.cm-line span', { hasText: 'Explain this error' })
    .last();
  await expect(comment).toHaveCSS('font-style', 'italic');
  // `import` is a bold keyword in Python only: in the prompt it is text inside **strong**.
  await expect(
    python.locator('.cm-line span', { hasText: /^import$/ })
  ).toHaveCSS('font-weight', '700');

  const mimetypes = await page.evaluate(() =>
    (window as any).jupyterapp.shell.currentWidget.content.widgets.map(
      (cell: any) => cell.model.mimeType
    )
  );
  expect(mimetypes).toEqual(['text/x-ipythongfm', 'text/x-ipython']);

  await (await page.notebook.getNotebookInPanelLocator())!.screenshot({
    path: path.join(IMAGES, 'lab-highlight.png')
  });
});

test('"explain this cell" inserts a Markdown cell written by the model', async ({
  page
}) => {
  const errors = consoleErrors(page);
  await page.notebook.createNew('explain.ipynb', { kernel: 'python3' });
  await page.notebook.setCell(
    0,
    'code',
    'def area(r):\n    return 3.14159 * r ** 2\n\nprint(area(2))'
  );
  await page.notebook.enterCellEditingMode(0);

  // From the command palette.
  await page.keyboard.press('Control+Shift+C');
  await page.locator('#modal-command-palette input').fill('Gemma: explain');
  await page
    .locator('#modal-command-palette .lm-CommandPalette-item', {
      hasText: 'Gemma: explain this cell'
    })
    .click();

  await expect(
    page.locator('.Toastify__toast', { hasText: /Gemma: / })
  ).toBeVisible();
  await waitForCells(page, 2);
  const answer = (await cells(page))[1];
  expect(answer.type).toBe('markdown');
  expect(answer.source.trim().length).toBeGreaterThan(0);
  expect(answer.metadata.gemma_nb.action).toBe('explain');
  expect(answer.metadata.gemma_nb.model).toMatch(MODEL);
  expect(answer.metadata.gemma_nb.tokens).toBeGreaterThan(0);
  // Rendered, as the model wrote it.
  const rendered = (await page.notebook.getCellLocator(1))!.locator(
    '.jp-RenderedMarkdown'
  );
  await expect(rendered).toContainText(
    answer.source.trim().split('\n')[0].slice(0, 20)
  );

  // The status bar names the model, its provider and the answer's speed.
  const status = page.locator('.jp-gemma-nb-status');
  await expect(status).toContainText(MODEL);
  await expect(status).toContainText(/cpu · \d+(\.\d)? tok\/s/);
  // The progress notice made way for the final one (and did not come back).
  await noticeSettled(page, 'inserted a Markdown cell below');
  await page.screenshot({ path: path.join(IMAGES, 'lab-explain.png') });
  expect(errors.filter(e => /gemma/i.test(e))).toEqual([]);
});

test('"fix this cell" on a cell that raised inserts a code cell', async ({
  page
}) => {
  await page.notebook.createNew('fix.ipynb', { kernel: 'python3' });
  await page.notebook.setCell(
    0,
    'code',
    // No indented block: the editor's auto-indent would indent the line typed after it.
    'numbers = [1, 2, 3]\ntotal = sum(numbers)\nprint(totl)'
  );
  await page.notebook.runCell(0, true);
  const cell = (await page.notebook.getCellLocator(0))!;
  await expect(cell.locator('.jp-OutputArea-output')).toContainText(
    'NameError'
  );

  // From the cell's context menu.
  await cell.locator('.jp-InputPrompt').click({ button: 'right' });
  await page.getByRole('menuitem', { name: 'Gemma: fix this cell' }).click();

  await waitForCells(page, 2);
  const fix = (await cells(page))[1];
  expect(fix.type).toBe('code');
  expect(fix.metadata.gemma_nb.action).toBe('fix');
  expect(fix.metadata.gemma_nb.model).toMatch(MODEL);
  await expect(page.locator('.jp-gemma-nb-status')).toContainText(MODEL);
  await noticeSettled(page, 'inserted a code cell below');
  await page.screenshot({ path: path.join(IMAGES, 'lab-fix.png') });
});

test('the cell toolbar has the three commands; "document" inserts a Markdown cell', async ({
  page
}) => {
  await page.notebook.createNew('document.ipynb', { kernel: 'python3' });
  await page.notebook.setCell(
    0,
    'code',
    'import math\nhypotenuse = math.hypot(3, 4)'
  );
  const cell = (await page.notebook.getCellLocator(0))!;
  const toolbar = cell.locator('.jp-cell-toolbar');
  for (const command of ['explain', 'fix', 'document']) {
    await expect(
      toolbar.locator(`[data-command="gemma-nb:${command}"]`)
    ).toBeVisible();
  }
  await toolbar.locator('[data-command="gemma-nb:document"]').click();

  await waitForCells(page, 2);
  const doc = (await cells(page))[1];
  expect(doc.type).toBe('markdown');
  expect(doc.metadata.gemma_nb.action).toBe('document');
  await expect(toolbar).toBeVisible(); // the cell it ran on stays the active one
  await noticeSettled(page, 'inserted a Markdown cell below');
  await page.screenshot({ path: path.join(IMAGES, 'lab-toolbar.png') });
});

// The kernel answers this one within milliseconds, before the progress notice is on screen:
// the case where JupyterLab dropped the notice's update and it stayed at "0 tokens" (#7).
test('a command on a kernel without gemma_nb says how to install it', async ({
  page
}) => {
  const errors = consoleErrors(page);
  await page.notebook.createNew('no-gemma.ipynb', {
    kernel: 'python-without-gemma-nb'
  });
  await page.notebook.setCell(0, 'code', 'print(1)');
  await page.notebook.runCell(0, true); // the kernel is up and Python
  await page.evaluate(() =>
    (window as any).jupyterapp.commands.execute('gemma-nb:explain')
  );

  const notice = page.locator('.Toastify__toast', { hasText: 'not installed' });
  await expect(notice).toBeVisible();
  await expect(notice).toContainText(
    "gemma_nb is not installed in this notebook's kernel"
  );
  await expect(notice).toContainText('%pip install gemma-nb');
  await noticeSettled(page, 'not installed'); // nothing is left waiting
  expect((await cells(page)).length).toBe(1);
  await page.screenshot({ path: path.join(IMAGES, 'lab-not-installed.png') });
  expect(errors).toEqual([]);
});
