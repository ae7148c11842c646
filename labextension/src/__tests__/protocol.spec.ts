import { LineParser, parseLine, PREFIX } from '../protocol';

const line = (event: object) => PREFIX + JSON.stringify(event);

describe('parseLine', () => {
  it('reads an event line', () => {
    expect(parseLine(line({ event: 'progress', tokens: 3 }))).toEqual({
      event: 'progress',
      tokens: 3
    });
  });

  it('ignores lines without the prefix', () => {
    expect(parseLine('loading weights 50%')).toBeNull();
    expect(parseLine('{"event": "answer"}')).toBeNull();
  });

  it('ignores a prefixed line that is not JSON or names no event', () => {
    expect(parseLine(PREFIX + '{"event": "answ')).toBeNull();
    expect(parseLine(PREFIX + '[1, 2]')).toBeNull();
    expect(parseLine(line({ event: 'unknown' }))).toBeNull();
    expect(parseLine(PREFIX + 'null')).toBeNull();
  });

  it('accepts a carriage return before the newline', () => {
    expect(parseLine(line({ event: 'status', message: 'x' }) + '\r')).toEqual({
      event: 'status',
      message: 'x'
    });
  });
});

describe('LineParser', () => {
  it('joins an event split across chunks', () => {
    const parser = new LineParser();
    const text = line({ event: 'status', message: 'loading default' }) + '\n';
    expect(parser.push(text.slice(0, 10))).toEqual([]);
    expect(parser.push(text.slice(10, 25))).toEqual([]);
    expect(parser.push(text.slice(25))).toEqual([
      { event: 'status', message: 'loading default' }
    ]);
  });

  it('splits several events in one chunk and skips foreign lines', () => {
    const parser = new LineParser();
    const chunk =
      line({ event: 'progress', tokens: 1 }) +
      '\nsomething else printed\n' +
      line({ event: 'progress', tokens: 2 }) +
      '\n';
    expect(
      parser.push(chunk).map(e => (e as { tokens: number }).tokens)
    ).toEqual([1, 2]);
  });

  it('keeps newlines inside JSON strings escaped, so a multi-line answer is one event', () => {
    const parser = new LineParser();
    const answer = {
      event: 'answer',
      text: 'line one\nline two\n```\ncode\n```'
    };
    const [event] = parser.push(line(answer) + '\n');
    expect(event).toEqual(answer);
  });

  it('flushes a last line that never got its newline', () => {
    const parser = new LineParser();
    expect(parser.push(line({ event: 'status', message: 'm' }))).toEqual([]);
    expect(parser.flush()).toEqual([{ event: 'status', message: 'm' }]);
    expect(parser.flush()).toEqual([]);
  });
});
