// A thread that runs tasks other threads hand it. An HTTP event loop is one:
// code it calls for a request may note TaskQueue::Current() and later, from
// any thread, Post() the rest of that request's work back to it. A model's
// worker does this with the answers of a batch, so that it goes back to
// computing while the loops that read the requests encode the answers.
//
// Thread-safety: Post is safe from any thread; Current reads the calling
// thread's own setting.
//
// Usage:
//   TaskQueue* home = TaskQueue::Current();   // on the loop, or null
//   ... on a worker ...
//   home->Post([] { ... });                     // runs on the loop, soon
#ifndef CAIRN_BASE_TASK_QUEUE_H_
#define CAIRN_BASE_TASK_QUEUE_H_

#include <functional>

namespace cairn {

class TaskQueue {
 public:
  virtual ~TaskQueue() = default;

  // Any thread. Runs `task` on the queue's thread, soon, in the order posted.
  // REQUIRES: the queue runs until every task posted to it ran (an event
  // loop does: it keeps running while a request it read is unanswered).
  virtual void Post(std::function<void()> task) = 0;

  // The calling thread's queue, or null where it has none.
  static TaskQueue* Current();

 protected:
  // The queue's thread makes it its current one while it runs (null after).
  static void SetCurrent(TaskQueue* queue);
};

}  // namespace cairn

#endif  // CAIRN_BASE_TASK_QUEUE_H_
