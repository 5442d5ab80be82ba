import { MockfleetError } from '../util/errors.js';

/** A broken engine invariant: always a bug in mockfleet, never a user error. */
export class EngineInvariantError extends MockfleetError {
  constructor(message: string) {
    super('MOCKFLEET_ERR_ENGINE_INVARIANT', `engine invariant violated: ${message}`, { status: 500, type: 'server_error' });
  }
}
