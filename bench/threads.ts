// Which thread counts the bench measures.
//
// The addon has no thread pool yet, so every contender runs on one thread; the roofline probe and
// the step contenders already take a thread count, so that adding the pool means adding a count
// here. (When it lands: 1 and os.availableParallelism().)
export function threadCounts(): number[] {
  return [1];
}
