/** The text with every control character (CR, LF, tabs, escapes) shown as a space, for headers. */
export function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  return text.replace(/[\u0000-\u001f\u007f]/g, ' ');
}
