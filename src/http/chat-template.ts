/**
 * The chat template mockfleet renders messages with before tokenizing (no Jinja templates):
 *
 *   <|role|>\n{content}\n      for every message, in order
 *   <|assistant|>\n            generation prompt
 *
 * Text parts of array content are joined with "\n".
 */
export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

export function renderChat(messages: readonly ChatMessage[]): string {
  let out = '';
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as ChatMessage;
    out += '<|' + m.role + '|>\n' + m.content + '\n';
  }
  return out + '<|assistant|>\n';
}
