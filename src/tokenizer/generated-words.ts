/**
 * Words the default tokenizer renders generated token ids as (index = id mod 256). Plain ASCII
 * letters only, so each re-encodes to exactly one token. Order is part of the output contract:
 * changing it changes every generated text.
 */
export const GENERATED_WORDS: readonly string[] = Object.freeze([
  'the', 'of', 'and', 'to', 'in', 'is', 'that', 'for', 'it', 'as', 'was', 'with', 'be', 'by', 'on', 'not',
  'he', 'this', 'are', 'or', 'his', 'from', 'at', 'which', 'but', 'have', 'an', 'they', 'one', 'you', 'were',
  'her', 'all', 'she', 'there', 'would', 'their', 'we', 'him', 'been', 'has', 'when', 'who', 'will', 'more',
  'no', 'if', 'out', 'so', 'said', 'what', 'up', 'its', 'about', 'into', 'than', 'them', 'can', 'only',
  'other', 'new', 'some', 'could', 'time', 'these', 'two', 'may', 'then', 'do', 'first', 'any', 'my', 'now',
  'such', 'like', 'our', 'over', 'man', 'me', 'even', 'most', 'made', 'after', 'also', 'did', 'many',
  'before', 'must', 'through', 'back', 'years', 'where', 'much', 'your', 'way', 'well', 'down', 'should',
  'because', 'each', 'just', 'those', 'people', 'how', 'too', 'little', 'state', 'good', 'very', 'make',
  'world', 'still', 'own', 'see', 'men', 'work', 'long', 'get', 'here', 'between', 'both', 'life', 'being',
  'under', 'never', 'day', 'same', 'another', 'know', 'while', 'last', 'might', 'us', 'great', 'old', 'year',
  'off', 'come', 'since', 'against', 'go', 'came', 'right', 'used', 'take', 'three', 'place', 'light',
  'river', 'stone', 'water', 'cloud', 'field', 'forest', 'garden', 'harbor', 'island', 'meadow', 'mountain',
  'ocean', 'valley', 'window', 'bridge', 'castle', 'tower', 'village', 'market', 'letter', 'number', 'paper',
  'story', 'answer', 'question', 'reason', 'moment', 'minute', 'morning', 'evening', 'winter', 'summer',
  'spring', 'autumn', 'silver', 'golden', 'purple', 'orange', 'yellow', 'green', 'blue', 'red', 'white',
  'black', 'gentle', 'quiet', 'bright', 'swift', 'calm', 'brave', 'clever', 'simple', 'honest', 'apple',
  'bread', 'candle', 'desert', 'engine', 'feather', 'glass', 'hammer', 'iron', 'jacket', 'kettle', 'ladder',
  'mirror', 'needle', 'orchard', 'pencil', 'rabbit', 'saddle', 'thunder', 'umbrella', 'velvet', 'wagon',
  'yarn', 'anchor', 'basket', 'copper', 'dragon', 'echo', 'falcon', 'glacier', 'hollow', 'ivory', 'jungle',
  'kingdom', 'lantern', 'marble', 'nectar', 'oyster', 'pepper', 'quartz', 'ribbon', 'shadow', 'timber',
  'tunnel', 'violet', 'willow', 'zephyr', 'beacon', 'canyon', 'dune', 'ember', 'fjord', 'grove', 'horizon',
  'lagoon',
]);
