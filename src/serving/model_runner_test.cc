#include "serving/model_runner.h"

#include <atomic>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/deferred.h"
#include "base/testing.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ManualTaskQueue;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::Le;

// Test double: y[i] = sum of row i of x (FP32 [-1, 3]). A row whose first
// element is negative makes the whole call fail kInvalidArgument (a "bad
// request"). Calls can be held at a gate, and every call's row count is
// recorded.
class SumBackend : public ModelBackend {
 public:
  SumBackend() {
    signature_.inputs = {{"x", DataType::kFp32, {-1, 3}}};
    signature_.outputs = {{"y", DataType::kFp32, {-1, 1}}};
  }

  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return "test_sum"; }
  uint64_t memory_bytes() const override { return 1234; }
  bool quick() const override { return quick_; }
  void set_quick(bool quick) { quick_ = quick; }

  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override {
    absl::MutexLock lock(&mu_);
    calls_.push_back(inputs[0].shape[0]);
    ++entered_;
    mu_.Await(absl::Condition(+[](SumBackend* b) ABSL_NO_THREAD_SAFETY_ANALYSIS { return b->open_; }, this));
    if (!fail_.ok()) return fail_;
    const Tensor& x = inputs[0];
    std::span<const float> v = x.values<float>();
    std::vector<float> y(x.shape[0]);
    for (int64_t r = 0; r < x.shape[0]; ++r) {
      if (v[r * 3] < 0) return absl::InvalidArgumentError("negative feature");
      y[r] = v[r * 3] + v[r * 3 + 1] + v[r * 3 + 2];
    }
    return std::vector<Tensor>{Tensor::FromValues<float>("y", DataType::kFp32, {x.shape[0], 1}, y)};
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    open_ = false;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void Fail(absl::Status status) {
    absl::MutexLock lock(&mu_);
    fail_ = std::move(status);
  }
  // Waits until `n` calls have entered Infer (they may be held at the gate).
  void AwaitEntered(int n) {
    std::pair<SumBackend*, int> arg(this, n);
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::pair<SumBackend*, int>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->first->entered_ >= a->second; },
        &arg));
  }
  std::vector<int64_t> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  ModelSignature signature_;
  bool quick_ = false;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> calls_ ABSL_GUARDED_BY(mu_);
};

// `rows` rows whose elements are first, first + 1, ... (row sums are easy to check).
std::vector<Tensor> Rows(int64_t rows, float first = 1) {
  std::vector<float> v(rows * 3);
  std::iota(v.begin(), v.end(), first);
  return {Tensor::FromValues<float>("x", DataType::kFp32, {rows, 3}, v)};
}

float RowSum(float first, int64_t row) { return 3 * (first + 3 * row) + 3; }

class ModelRunnerTest : public ::testing::Test {
 protected:
  std::unique_ptr<ModelRunner> NewRunner(RunnerOptions options) {
    absl::StatusOr<std::unique_ptr<ModelRunner>> runner =
        ModelRunner::Create(backend_, options, {"prod", "iris", 3}, &metrics_);
    EXPECT_OK(runner.status());
    return std::move(runner).value();
  }

  std::shared_ptr<SumBackend> backend_ = std::make_shared<SumBackend>();
  MetricRegistry registry_;
  InferenceMetrics metrics_{registry_};
};

TEST_F(ModelRunnerTest, SingleRequestIsPassedThrough) {
  auto runner = NewRunner({});
  ASSERT_OK_AND_ASSIGN(RunResult r, runner->Infer(Rows(2, 1)));
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_EQ(r.outputs[0].name, "y");
  EXPECT_THAT(r.outputs[0].shape, ElementsAre(2, 1));
  EXPECT_THAT(r.outputs[0].values<float>(), ElementsAre(RowSum(1, 0), RowSum(1, 1)));
  EXPECT_EQ(r.batch_size, 2);
  ASSERT_EQ(r.inputs.size(), 1u);  // handed back
  EXPECT_EQ(r.inputs[0].name, "x");
  EXPECT_THAT(backend_->calls(), ElementsAre(2));
}

TEST_F(ModelRunnerTest, RejectsBadOptions) {
  EXPECT_THAT(ModelRunner::Create(backend_, {.max_batch_size = 0}, {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch_size")));
  EXPECT_THAT(ModelRunner::Create(backend_, {.instances = 0}, {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("instances")));
  EXPECT_THAT(ModelRunner::Create(backend_, {.queue_capacity = 0}, {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("queue_capacity")));
  EXPECT_THAT(ModelRunner::Create(nullptr, {}, {}, nullptr), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ModelRunnerTest, InvalidInputsAreRefusedBeforeQueueing) {
  auto runner = NewRunner({});
  std::vector<Tensor> wrong = {Tensor::FromValues<double>("x", DataType::kFp64, {1, 3}, std::vector<double>{1, 2, 3})};
  EXPECT_THAT(runner->Infer(std::move(wrong)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x'")));
  EXPECT_TRUE(backend_->calls().empty());
  Json stats = runner->Statistics();
  EXPECT_EQ(stats["requests"]["invalid_argument"], 1);
  EXPECT_EQ(stats["failures"]["invalid_input"], 1);
}

TEST_F(ModelRunnerTest, ConcurrentRequestsAreBatchedTogether) {
  // A long delay: the batch closes when max_batch_size rows are queued, not
  // when time runs out, so the grouping does not depend on timing.
  auto runner = NewRunner({.max_batch_size = 8, .max_queue_delay_us = 10'000'000, .instances = 1});
  std::vector<std::thread> callers;
  std::vector<absl::StatusOr<RunResult>> results(8, absl::UnknownError("not run"));
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&, i] { results[i] = runner->Infer(Rows(1, 100.0f * i)); });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(results[i].status());
    EXPECT_EQ(results[i]->batch_size, 8);
    // Each caller gets its own row back.
    EXPECT_THAT(results[i]->outputs[0].values<float>(), ElementsAre(RowSum(100.0f * i, 0)));
    EXPECT_THAT(results[i]->outputs[0].shape, ElementsAre(1, 1));
  }
  EXPECT_THAT(backend_->calls(), ElementsAre(8));
  Json stats = runner->Statistics();
  EXPECT_GT(stats["batch_size"]["mean"].get<double>(), 1.0);
  EXPECT_EQ(stats["requests"]["ok"], 8);
}

TEST_F(ModelRunnerTest, MaxBatchSizeIsRespected) {
  auto runner = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 10'000'000, .instances = 1});
  // Hold the only worker in a first call so that the others queue up.
  backend_->Close();
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  callers.emplace_back([&] { ok += runner->Infer(Rows(4)).ok(); });  // a full batch: runs at once
  backend_->AwaitEntered(1);
  const int rows[] = {3, 2, 1, 2, 1, 3};  // 12 rows; no two 3s fit together
  for (int n : rows) callers.emplace_back([&, n] { ok += runner->Infer(Rows(n)).ok(); });
  while (runner->queue_depth() < 6) std::this_thread::yield();
  backend_->Open();
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok, 7);
  std::vector<int64_t> calls = backend_->calls();
  EXPECT_THAT(calls, Each(Le(4)));
  EXPECT_EQ(std::accumulate(calls.begin(), calls.end(), int64_t{0}), 16);
}

TEST_F(ModelRunnerTest, RequestLargerThanMaxBatchRunsAlone) {
  auto runner = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 1000});
  ASSERT_OK_AND_ASSIGN(RunResult r, runner->Infer(Rows(10)));
  EXPECT_EQ(r.batch_size, 10);
  EXPECT_EQ(r.outputs[0].shape[0], 10);
}

TEST_F(ModelRunnerTest, FullQueueIsResourceExhausted) {
  auto runner = NewRunner({.queue_capacity = 2});
  backend_->Close();
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  callers.emplace_back([&] { ok += runner->Infer(Rows(1)).ok(); });
  backend_->AwaitEntered(1);
  for (int i = 0; i < 2; ++i) callers.emplace_back([&] { ok += runner->Infer(Rows(1)).ok(); });
  while (runner->queue_depth() < 2) std::this_thread::yield();
  EXPECT_THAT(runner->Infer(Rows(1)),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue of model iris version 3 is full")));
  backend_->Open();
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(runner->Statistics()["failures"]["queue_full"], 1);
}

TEST_F(ModelRunnerTest, DeadlinePassingInQueueFailsWithoutRunning) {
  auto runner = NewRunner({});
  backend_->Close();
  std::thread first([&] { EXPECT_OK(runner->Infer(Rows(1)).status()); });
  backend_->AwaitEntered(1);
  EXPECT_THAT(runner->Infer(Rows(1), absl::Now() + absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timed out in the queue")));
  EXPECT_EQ(runner->queue_depth(), 0);  // withdrawn
  backend_->Open();
  first.join();
  EXPECT_THAT(backend_->calls(), ElementsAre(1));  // the timed-out request never ran
  EXPECT_EQ(runner->Statistics()["failures"]["deadline"], 1);
}

TEST_F(ModelRunnerTest, DeadlinePassingWhileComputingIsAnsweredAtTheDeadline) {
  // A batching delay: every request goes through the queue to a worker.
  auto runner = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 1000, .instances = 1});
  backend_->Close();
  absl::Notification answered;
  std::thread opener([&] {  // so that a caller held until the call ends fails instead of hanging
    if (!answered.WaitForNotificationWithTimeout(absl::Seconds(10))) backend_->Open();
  });
  // A second is ample for the worker to take the request (after 1 ms).
  const absl::Time start = absl::Now();
  EXPECT_THAT(runner->Infer(Rows(1), start + absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("while its batch was computing")));
  answered.Notify();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_THAT(backend_->calls(), ElementsAre(1));  // it had started
  EXPECT_EQ(runner->in_flight(), 1);               // the model is still busy with it
  backend_->Open();
  opener.join();
  runner->Drain();  // the worker finishes the call and drops the answer
  EXPECT_EQ(runner->in_flight(), 0);
  const Json stats = runner->Statistics();
  EXPECT_EQ(stats["failures"]["deadline"], 1);
  // Counted once, as the failure the caller saw.
  EXPECT_EQ(stats["requests"].value("deadline_exceeded", 0), 1) << stats.dump();
  EXPECT_EQ(stats["requests"].value("ok", 0), 0) << stats.dump();
  // Requests that meet their deadline are unaffected.
  auto next = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 1000, .instances = 1});
  ASSERT_OK_AND_ASSIGN(RunResult r, next->Infer(Rows(2), absl::Now() + absl::Seconds(30)));
  EXPECT_EQ(r.outputs[0].values<float>()[1], RowSum(1, 1));
}

TEST_F(ModelRunnerTest, DefaultTimeoutApplies) {
  auto runner = NewRunner({.default_timeout_ms = 20});
  backend_->Close();
  std::thread first([&] { EXPECT_OK(runner->Infer(Rows(1), absl::InfiniteFuture()).status()); });
  backend_->AwaitEntered(1);
  EXPECT_THAT(runner->Infer(Rows(1)), StatusIs(absl::StatusCode::kDeadlineExceeded));
  backend_->Open();
  first.join();
}

TEST_F(ModelRunnerTest, ExpiredSubmitFailsAtDequeue) {
  auto runner = NewRunner({});
  backend_->Close();
  std::thread first([&] { EXPECT_OK(runner->Infer(Rows(1)).status()); });
  backend_->AwaitEntered(1);
  absl::Notification done;
  absl::Status status;
  runner->Submit(Rows(1), absl::Now() - absl::Seconds(1), [&](absl::StatusOr<RunResult> r) {
    status = r.status();
    done.Notify();
  });
  backend_->Open();
  done.WaitForNotification();
  first.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(backend_->calls(), ElementsAre(1));
}

TEST_F(ModelRunnerTest, TrySubmitComputesOnTheCallersThreadOnlyForAQuickIdleModel) {
  auto runner = NewRunner({});
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<std::thread::id> threads;
  absl::Mutex mu;
  absl::CondVar answered;
  auto record = [&](absl::StatusOr<RunResult> r) {
    ASSERT_TRUE(r.ok());
    EXPECT_THAT(r->outputs[0].values<float>(), ElementsAre(RowSum(1, 0)));
    absl::MutexLock lock(&mu);
    threads.push_back(std::this_thread::get_id());
    answered.SignalAll();
  };

  // Not quick: a worker computes and answers.
  std::vector<Tensor> inputs = Rows(1);
  ModelRunner::Callback done = record;
  ASSERT_OK(runner->TrySubmit(inputs, done));
  {
    absl::MutexLock lock(&mu);
    while (threads.size() < 1) answered.Wait(&mu);
    EXPECT_NE(threads[0], caller);
  }
  // Quick and idle: computed here, answered before TrySubmit returns.
  while (runner->in_flight() != 0) std::this_thread::yield();  // the worker lets go of its instance
  backend_->set_quick(true);
  inputs = Rows(1);
  done = record;
  ASSERT_OK(runner->TrySubmit(inputs, done));
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(threads.size(), 2u);
    EXPECT_EQ(threads[1], caller);
  }
  EXPECT_EQ(runner->in_flight(), 0);
}

TEST_F(ModelRunnerTest, TrySubmitQueuesWhileAnotherInstanceIsBusy) {
  auto runner = NewRunner({.max_batch_size = 8, .instances = 2});
  backend_->set_quick(true);
  backend_->Close();
  std::atomic<int> answered{0};
  runner->Submit(Rows(1), std::nullopt, [&](absl::StatusOr<RunResult> r) { answered += r.ok(); });
  backend_->AwaitEntered(1);  // one instance busy, one idle
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  ModelRunner::Callback done = [&](absl::StatusOr<RunResult> r) {
    on_caller = std::this_thread::get_id() == caller;
    answered += r.ok();
  };
  std::vector<Tensor> inputs = Rows(1);
  ASSERT_OK(runner->TrySubmit(inputs, done));  // queued for the idle worker, not run here
  backend_->AwaitEntered(2);
  EXPECT_EQ(answered, 0);
  backend_->Open();
  while (answered < 2) std::this_thread::yield();
  EXPECT_FALSE(on_caller);
}

TEST_F(ModelRunnerTest, TrySubmitOnADeferringThreadComputesThePassInBatches) {
  auto runner = NewRunner({.max_batch_size = 4, .instances = 1});
  backend_->set_quick(true);
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<float> sums;
  std::vector<int> batch_sizes;
  int elsewhere = 0;
  {
    DeferredTasks later;
    for (int i = 0; i < 6; ++i) {
      std::vector<Tensor> inputs = Rows(1, static_cast<float>(10 * i));
      ModelRunner::Callback done = [&](absl::StatusOr<RunResult> r) {
        ASSERT_TRUE(r.ok()) << r.status();
        sums.push_back(r->outputs[0].values<float>()[0]);
        batch_sizes.push_back(r->batch_size);
        elsewhere += std::this_thread::get_id() != caller;
      };
      ASSERT_OK(runner->TrySubmit(inputs, done));
    }
    EXPECT_TRUE(sums.empty());  // nothing runs before the pass ends
    EXPECT_TRUE(backend_->calls().empty());
    later.RunAll();
    // Answered on this thread, in order, in batches of at most 4 rows.
    EXPECT_THAT(backend_->calls(), ElementsAre(4, 2));
    EXPECT_THAT(batch_sizes, ElementsAre(4, 4, 4, 4, 2, 2));
    ASSERT_EQ(sums.size(), 6u);
    for (int i = 0; i < 6; ++i) EXPECT_EQ(sums[i], RowSum(10.0f * i, 0));
    EXPECT_EQ(elsewhere, 0);
  }
  EXPECT_EQ(runner->in_flight(), 0);
}

TEST_F(ModelRunnerTest, APassFindingEveryInstanceBusyIsQueuedForTheWorkers) {
  auto runner = NewRunner({.max_batch_size = 8, .instances = 1});
  backend_->set_quick(true);
  backend_->Close();
  std::atomic<int> answered{0};
  runner->Submit(Rows(1), std::nullopt, [&](absl::StatusOr<RunResult> r) { answered += r.ok(); });
  backend_->AwaitEntered(1);  // the only instance is busy
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> on_caller{0};
  {
    DeferredTasks later;
    for (int i = 0; i < 3; ++i) {
      std::vector<Tensor> inputs = Rows(1);
      ModelRunner::Callback done = [&](absl::StatusOr<RunResult> r) {
        on_caller += std::this_thread::get_id() == caller;
        answered += r.ok();
      };
      ASSERT_OK(runner->TrySubmit(inputs, done));
    }
    later.RunAll();  // queued, not run here
    EXPECT_EQ(runner->queue_depth(), 3);
  }
  backend_->Open();
  while (answered < 4) std::this_thread::yield();
  EXPECT_EQ(on_caller, 0);
  EXPECT_THAT(backend_->calls(), ElementsAre(1, 3));  // the worker batched the pass's requests
}

TEST_F(ModelRunnerTest, APassMeetingAFullQueueIsAnswered429ForTheRest) {
  auto runner = NewRunner({.max_batch_size = 8, .instances = 1, .queue_capacity = 1});
  backend_->set_quick(true);
  backend_->Close();
  runner->Submit(Rows(1), std::nullopt, [](absl::StatusOr<RunResult>) {});
  backend_->AwaitEntered(1);  // the only instance is busy
  std::vector<absl::Status> results;
  {
    DeferredTasks later;
    for (int i = 0; i < 3; ++i) {
      std::vector<Tensor> inputs = Rows(1);
      ModelRunner::Callback done = [&](absl::StatusOr<RunResult> r) { results.push_back(r.status()); };
      ASSERT_OK(runner->TrySubmit(inputs, done));
    }
    later.RunAll();
  }
  // One fits in the queue; the other two are answered at once.
  EXPECT_THAT(results, ElementsAre(StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("is full")),
                                   StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("is full"))));
  EXPECT_EQ(runner->queue_depth(), 1);
  backend_->Open();
  while (runner->in_flight() != 0) std::this_thread::yield();
  EXPECT_EQ(results.size(), 3u);
}

TEST_F(ModelRunnerTest, DrainWaitsForAPendingPassAndThePassStillRuns) {
  auto runner = NewRunner({.max_batch_size = 8, .instances = 1});
  backend_->set_quick(true);
  std::atomic<int> answered{0};
  DeferredTasks later;
  for (int i = 0; i < 2; ++i) {
    std::vector<Tensor> inputs = Rows(1);
    ModelRunner::Callback done = [&](absl::StatusOr<RunResult> r) { answered += r.ok(); };
    ASSERT_OK(runner->TrySubmit(inputs, done));
  }
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    runner->Drain();
    drained = true;
  });
  while (!runner->draining()) std::this_thread::yield();
  // Draining: a new request is refused at once and stays with the caller...
  std::vector<Tensor> inputs = Rows(1);
  ModelRunner::Callback done = [&](absl::StatusOr<RunResult>) { FAIL() << "refused requests are not answered"; };
  EXPECT_THAT(runner->TrySubmit(inputs, done), StatusIs(absl::StatusCode::kUnavailable));
  // ...while the pending pass holds Drain until it has run (here, workers gone).
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(drained);
  later.RunAll();
  drainer.join();
  EXPECT_EQ(answered, 2);
  EXPECT_THAT(backend_->calls(), ElementsAre(2));
}

TEST_F(ModelRunnerTest, AnswersGoBackToTheSubmittingThreadsTaskQueue) {
  auto runner = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 200000, .instances = 1});
  ManualTaskQueue queue;  // this thread's
  const std::thread::id here = std::this_thread::get_id();
  std::atomic<int> answered{0};
  std::vector<float> sums;
  for (int i = 0; i < 3; ++i) {
    runner->Submit(Rows(1, static_cast<float>(i)), std::nullopt, [&, i](absl::StatusOr<RunResult> r) {
      ASSERT_OK(r.status());
      EXPECT_EQ(std::this_thread::get_id(), here);
      EXPECT_EQ(r->outputs[0].values<float>()[0], RowSum(static_cast<float>(i), 0));
      ++answered;
    });
  }
  // Submitted where no TaskQueue is: answered on the worker.
  std::thread::id elsewhere;
  std::thread other([&] {
    runner->Submit(Rows(1), std::nullopt, [&](absl::StatusOr<RunResult> r) {
      EXPECT_OK(r.status());
      elsewhere = std::this_thread::get_id();
    });
  });
  other.join();
  ASSERT_TRUE(queue.AwaitPosted(3));  // computed as one batch of 4; three answers wait for this thread
  EXPECT_THAT(backend_->calls(), ElementsAre(4));
  EXPECT_EQ(answered, 0);
  // Drain waits for the posted answers, which may still use the runner.
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    runner->Drain();
    drained = true;
  });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_FALSE(drained);
  EXPECT_TRUE(queue.RunPosted());
  drainer.join();
  EXPECT_EQ(answered, 3);
  EXPECT_NE(elsewhere, std::thread::id());
  EXPECT_NE(elsewhere, here);
  EXPECT_EQ(runner->in_flight(), 0);
}

TEST_F(ModelRunnerTest, TrySubmitRefusalLeavesInputsAndCallbackWithTheCaller) {
  auto runner = NewRunner({});
  runner->Drain();
  bool called = false;
  ModelRunner::Callback done = [&](absl::StatusOr<RunResult>) { called = true; };
  std::vector<Tensor> inputs = Rows(2);
  EXPECT_THAT(runner->TrySubmit(inputs, done), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_FALSE(called);
  ASSERT_EQ(inputs.size(), 1u);  // handed back
  EXPECT_THAT(inputs[0].shape, ElementsAre(2, 3));
  ASSERT_TRUE(done);  // still the caller's
  done(absl::CancelledError());
  EXPECT_TRUE(called);
}

TEST_F(ModelRunnerTest, DrainFinishesQueuedAndRunningRequests) {
  auto runner = NewRunner({});
  backend_->Close();
  std::atomic<int> ok{0};
  absl::Mutex mu;
  int callbacks = 0;
  auto count = [&](absl::StatusOr<RunResult> r) {
    ok += r.ok();
    absl::MutexLock lock(&mu);
    ++callbacks;
  };
  runner->Submit(Rows(1), std::nullopt, count);
  backend_->AwaitEntered(1);
  runner->Submit(Rows(1), std::nullopt, count);
  runner->Submit(Rows(1), std::nullopt, count);
  std::thread drainer([&] { runner->Drain(); });
  while (!runner->draining()) std::this_thread::yield();
  EXPECT_THAT(runner->Infer(Rows(1)), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  backend_->Open();
  drainer.join();
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(callbacks, 3);
  EXPECT_EQ(runner->in_flight(), 0);
  runner->Drain();  // idempotent
}

TEST_F(ModelRunnerTest, BadRequestInBatchFailsAlone) {
  auto runner = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 10'000'000, .instances = 1});
  std::vector<absl::StatusOr<RunResult>> results(4, absl::UnknownError("not run"));
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) {
    callers.emplace_back([&, i] { results[i] = runner->Infer(Rows(1, i == 2 ? -5.0f : 1.0f)); });
  }
  for (auto& t : callers) t.join();
  for (int i = 0; i < 4; ++i) {
    if (i == 2) {
      EXPECT_THAT(results[i], StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
    } else {
      EXPECT_OK(results[i].status());
    }
  }
  // One batch of 4 that failed, then each request alone.
  EXPECT_THAT(backend_->calls(), ElementsAre(4, 1, 1, 1, 1));
}

TEST_F(ModelRunnerTest, BackendErrorFailsEveryRequestOfTheBatch) {
  auto runner = NewRunner({.max_batch_size = 4, .max_queue_delay_us = 10'000'000, .instances = 1});
  backend_->Fail(absl::UnavailableError("worker died"));
  std::vector<absl::StatusOr<RunResult>> results(4, absl::UnknownError("not run"));
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) callers.emplace_back([&, i] { results[i] = runner->Infer(Rows(1)); });
  for (auto& t : callers) t.join();
  for (const auto& r : results) EXPECT_THAT(r, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("worker died")));
  EXPECT_THAT(backend_->calls(), ElementsAre(4));
}

TEST_F(ModelRunnerTest, WarmRunsOneZeroRequestPerInstance) {
  auto runner = NewRunner({.instances = 3});
  ASSERT_OK(runner->Warm());
  EXPECT_THAT(backend_->calls(), ElementsAre(1, 1, 1));
  backend_->Fail(absl::InternalError("cannot initialise"));
  EXPECT_THAT(runner->Warm(), StatusIs(absl::StatusCode::kInternal, HasSubstr("warming up model iris version 3")));
}

// A BYTES model: warm-up must send empty strings.
class EchoLengthBackend : public ModelBackend {
 public:
  EchoLengthBackend() {
    signature_.inputs = {{"text", DataType::kBytes, {-1}}};
    signature_.outputs = {{"length", DataType::kInt64, {-1}}};
  }
  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return "test_bytes"; }
  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override {
    std::vector<int64_t> lengths;
    for (std::string_view s : inputs[0].byte_elements()) lengths.push_back(static_cast<int64_t>(s.size()));
    seen = lengths;
    return std::vector<Tensor>{
        Tensor::FromValues<int64_t>("length", DataType::kInt64, {static_cast<int64_t>(lengths.size())}, lengths)};
  }
  std::vector<int64_t> seen;

 private:
  ModelSignature signature_;
};

TEST(ModelRunnerBytesTest, WarmSendsEmptyStrings) {
  auto backend = std::make_shared<EchoLengthBackend>();
  ASSERT_OK_AND_ASSIGN(auto runner, ModelRunner::Create(backend, {}, {"d", "m", 1}, nullptr));
  ASSERT_OK(runner->Warm());
  EXPECT_THAT(backend->seen, ElementsAre(0));
}

TEST_F(ModelRunnerTest, MetricsSeriesCarryTheModelLabels) {
  auto runner = NewRunner({});
  ASSERT_OK(runner->Infer(Rows(1)).status());
  std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("cairn_inference_requests_total{deployment=\"prod\",model=\"iris\",version=\"3\","
                              "code=\"ok\"} 1"));
  EXPECT_THAT(text, HasSubstr("cairn_inference_batch_size_count{deployment=\"prod\",model=\"iris\",version=\"3\"} 1"));
  EXPECT_THAT(text, HasSubstr("cairn_model_memory_bytes{deployment=\"prod\",model=\"iris\",version=\"3\"} 1234"));
  EXPECT_THAT(text, HasSubstr("cairn_inference_in_flight{deployment=\"prod\",model=\"iris\",version=\"3\"} 0"));
  runner.reset();
  registry_.Sweep();
  EXPECT_THAT(registry_.Render(), ::testing::Not(HasSubstr("model=\"iris\"")));
}

// Two 1-D inputs: out = a - b, so a request that names them in another
// order than the signature would give a wrong sign if not sorted.
class DiffBackend : public ModelBackend {
 public:
  DiffBackend() {
    signature_.inputs = {{"a", DataType::kFp32, {-1}}, {"b", DataType::kFp32, {-1}}};
    signature_.outputs = {{"out", DataType::kFp32, {-1}}};
  }
  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return "test_diff"; }
  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override {
    if (inputs[0].name != "a" || inputs[1].name != "b") return absl::InternalError("inputs out of order");
    std::vector<float> out;
    for (size_t i = 0; i < inputs[0].values<float>().size(); ++i) {
      out.push_back(inputs[0].values<float>()[i] - inputs[1].values<float>()[i]);
    }
    return std::vector<Tensor>{
        Tensor::FromValues<float>("out", DataType::kFp32, {static_cast<int64_t>(out.size())}, out)};
  }

 private:
  ModelSignature signature_;
};

TEST(ModelRunnerOrderTest, InputsInAnotherOrderAreSortedBySignature) {
  ASSERT_OK_AND_ASSIGN(auto runner,
                       ModelRunner::Create(std::make_shared<DiffBackend>(),
                                           {.max_batch_size = 4, .max_queue_delay_us = 10'000'000}, {"d", "m", 1},
                                           nullptr));
  std::vector<absl::StatusOr<RunResult>> results(2, absl::UnknownError("not run"));
  std::thread first([&] {
    results[0] = runner->Infer({Tensor::FromValues<float>("b", DataType::kFp32, {2}, std::vector<float>{1, 2}),
                                Tensor::FromValues<float>("a", DataType::kFp32, {2}, std::vector<float>{10, 20})});
  });
  std::thread second([&] {
    results[1] = runner->Infer({Tensor::FromValues<float>("a", DataType::kFp32, {2}, std::vector<float>{5, 6}),
                                Tensor::FromValues<float>("b", DataType::kFp32, {2}, std::vector<float>{1, 1})});
  });
  first.join();
  second.join();
  ASSERT_OK(results[0].status());
  ASSERT_OK(results[1].status());
  EXPECT_EQ(results[0]->batch_size, 4);  // stacked together
  EXPECT_THAT(results[0]->outputs[0].values<float>(), ElementsAre(9, 18));
  EXPECT_THAT(results[1]->outputs[0].values<float>(), ElementsAre(4, 5));
}

}  // namespace
}  // namespace cairn::serving
