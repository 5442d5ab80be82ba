/**
 * JSON-lines record of every published message (--events-file), decoded for humans and tests:
 * {"subject", "topic", "publisher_id", "sequence", "published_at", "payload"} with every 64-bit
 * integer as a decimal string and the payload decoded from msgpack. Lines are buffered per
 * drain pass and written with one synchronous write on the publisher thread.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { Unpackr } from 'msgpackr';

function bigintAsString(_key: string, v: unknown): unknown {
  return typeof v === 'bigint' ? v.toString(10) : v;
}

interface DecodedEnvelope {
  topic: string;
  publisher_id: bigint | number;
  sequence: bigint | number;
  published_at: bigint | number;
  payload: Uint8Array;
}

export class EventsFileWriter {
  private fd: number;
  private readonly unpackr: Unpackr;
  private lines: string[];
  readonly path: string;

  constructor(path: string) {
    this.path = path;
    this.fd = openSync(path, 'a');
    this.unpackr = new Unpackr({ int64AsType: 'bigint', useRecords: false, mapsAsObjects: true });
    this.lines = [];
  }

  add(subject: string, envelope: Uint8Array): void {
    // Decode from a private copy: the envelope may live in a shared arena.
    const env = this.unpackr.unpack(Buffer.from(envelope)) as DecodedEnvelope;
    const payload: unknown = this.unpackr.unpack(Buffer.from(env.payload));
    this.lines.push(
      JSON.stringify(
        { subject, topic: env.topic, publisher_id: BigInt(env.publisher_id), sequence: BigInt(env.sequence), published_at: BigInt(env.published_at), payload },
        bigintAsString,
      ),
    );
  }

  /** Writes the buffered lines (once per drain pass). */
  flush(): void {
    if (this.lines.length === 0) return;
    const text = this.lines.join('\n') + '\n';
    this.lines = [];
    writeSync(this.fd, text);
  }

  close(): void {
    this.flush();
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}
