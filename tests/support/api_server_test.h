// ApiServerTest: the set-up the API tests share. A data directory (under a
// temporary folder) served by api::BuildRouter on a free loopback port, and
// a keep-alive client connected to it. Stopped after each test.
//
// Usage:
//   class MyApiTest : public cairn::testing::ApiServerTest {};
//   TEST_F(MyApiTest, Works) { auto r = client_->Send(http::Method::kGet, "/health"); ... }
#ifndef CAIRN_TESTS_SUPPORT_API_SERVER_TEST_H_
#define CAIRN_TESTS_SUPPORT_API_SERVER_TEST_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "api/data_directory.h"
#include "api/mlflow_api.h"
#include "base/env.h"
#include "base/testing.h"
#include "http/http.h"

namespace cairn::testing {

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = NewPosixEnv();
    auto dir = api::DataDirectory::Open(*env_, data_path_);
    ASSERT_THAT(dir, IsOk());
    dir_ = std::move(dir).value();
    auto server = http::Server::Create({.host = "127.0.0.1", .port = 0}, api::BuildRouter(*dir_));
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    auto client = http::Client::Create("127.0.0.1", server_->port());
    ASSERT_THAT(client, IsOk());
    client_ = std::move(client).value();
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  // Declared in the order they are built; destroyed in reverse.
  ScopedTempDir tmp_;
  std::string data_path_ = tmp_.path() + "/data";
  std::unique_ptr<Env> env_;
  std::unique_ptr<api::DataDirectory> dir_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
};

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_SUPPORT_API_SERVER_TEST_H_
