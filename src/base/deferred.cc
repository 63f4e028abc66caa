#include "base/deferred.h"

#include <utility>

namespace cairn {
namespace {

thread_local DeferredTasks* current = nullptr;

}  // namespace

DeferredTasks::DeferredTasks() : previous_(current) { current = this; }

DeferredTasks::~DeferredTasks() {
  RunAll();
  current = previous_;
}

DeferredTasks* DeferredTasks::Current() { return current; }

void DeferredTasks::RunAll() {
  while (!tasks_.empty()) {
    std::vector<std::function<void()>> now;
    now.swap(tasks_);
    for (std::function<void()>& task : now) task();
  }
}

}  // namespace cairn
