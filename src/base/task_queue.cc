#include "base/task_queue.h"

namespace cairn {
namespace {

thread_local TaskQueue* current = nullptr;

}  // namespace

TaskQueue* TaskQueue::Current() { return current; }

void TaskQueue::SetCurrent(TaskQueue* queue) { current = queue; }

}  // namespace cairn
