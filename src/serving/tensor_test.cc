#include "serving/tensor.h"

#include <limits>
#include <string>
#include <vector>

#include "base/testing.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DataTypeTest, NamesRoundTripForEveryType) {
  const DataType all[] = {DataType::kBool,  DataType::kUint8, DataType::kUint16, DataType::kUint32, DataType::kUint64,
                          DataType::kInt8,  DataType::kInt16, DataType::kInt32,  DataType::kInt64,  DataType::kFp16,
                          DataType::kFp32,  DataType::kFp64,  DataType::kBytes};
  for (DataType type : all) {
    std::optional<DataType> parsed = ParseDataType(DataTypeName(type));
    ASSERT_TRUE(parsed.has_value()) << DataTypeName(type);
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(DataTypeName(DataType::kFp16), "FP16");
  EXPECT_EQ(ParseDataType("FLOAT"), std::nullopt);
  EXPECT_EQ(ParseDataType("fp32"), std::nullopt);  // the protocol is case-sensitive
  EXPECT_EQ(ParseDataType("BF16"), std::nullopt);
}

TEST(DataTypeTest, ElementSizes) {
  EXPECT_EQ(ElementSize(DataType::kBool), 1u);
  EXPECT_EQ(ElementSize(DataType::kUint16), 2u);
  EXPECT_EQ(ElementSize(DataType::kInt32), 4u);
  EXPECT_EQ(ElementSize(DataType::kFp16), 2u);
  EXPECT_EQ(ElementSize(DataType::kFp64), 8u);
  EXPECT_EQ(ElementSize(DataType::kBytes), 0u);
}

TEST(ElementCountTest, ProductOfDimensions) {
  std::vector<int64_t> shape = {2, 3, 4};
  EXPECT_EQ(*ElementCount(shape), 24);
  EXPECT_EQ(*ElementCount(std::vector<int64_t>{}), 1);  // a scalar
  EXPECT_EQ(*ElementCount(std::vector<int64_t>{5, 0, 7}), 0);
}

TEST(ElementCountTest, RejectsNegativeAndOverflow) {
  EXPECT_THAT(ElementCount(std::vector<int64_t>{2, -1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative dimension -1")));
  const int64_t big = int64_t{1} << 40;
  EXPECT_THAT(ElementCount(std::vector<int64_t>{big, big}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows")));
  // A zero dimension makes even a huge product empty.
  EXPECT_EQ(*ElementCount(std::vector<int64_t>{big, big, 0}), 0);
}

TEST(TensorTest, FromValuesAndValues) {
  std::vector<float> v = {1, 2, 3, 4, 5, 6};
  Tensor t = Tensor::FromValues<float>("x", DataType::kFp32, {2, 3}, v);
  EXPECT_THAT(t.CheckConsistent(), IsOk());
  EXPECT_EQ(t.element_count(), 6);
  EXPECT_EQ(t.batch_size(), 2);
  EXPECT_THAT(t.values<float>(), ElementsAre(1, 2, 3, 4, 5, 6));
  t.mutable_values<float>()[5] = 9;
  EXPECT_EQ(t.values<float>()[5], 9);
}

TEST(TensorTest, StringsRoundTrip) {
  std::vector<std::string> s = {"a", "", std::string("b\0c", 3)};
  Tensor t = Tensor::FromStrings("s", {3}, s);
  EXPECT_THAT(t.CheckConsistent(), IsOk());
  EXPECT_EQ(t.data.size(), 3 * 4 + 1 + 0 + 3);
  EXPECT_THAT(t.byte_elements(), ElementsAre("a", "", std::string_view("b\0c", 3)));
}

TEST(TensorTest, CheckConsistentNamesTheProblem) {
  std::vector<int32_t> v = {1, 2, 3, 4, 5};
  Tensor t = Tensor::FromValues<int32_t>("x", DataType::kInt32, {2, 3}, v);
  EXPECT_THAT(t.CheckConsistent(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor 'x'")));
  t.shape = {-1, 5};
  EXPECT_THAT(t.CheckConsistent(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));

  std::vector<std::string> s = {"ab", "c"};
  Tensor b = Tensor::FromStrings("b", {3}, s);
  EXPECT_THAT(b.CheckConsistent(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 3 elements, data has 2")));
  b.shape = {2};
  b.data.pop_back();  // the last element now claims one byte more than there is
  EXPECT_THAT(b.CheckConsistent(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("element 1")));
  b.data.resize(6 + 2);  // a length prefix cut short
  EXPECT_THAT(b.CheckConsistent(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated length prefix")));
}

TEST(BatchTest, ConcatThenSliceGivesThePartsBack) {
  std::vector<float> a_values = {1, 2, 3, 4};
  std::vector<float> b_values = {5, 6};
  Tensor a = Tensor::FromValues<float>("x", DataType::kFp32, {2, 2}, a_values);
  Tensor b = Tensor::FromValues<float>("x", DataType::kFp32, {1, 2}, b_values);
  std::vector<const Tensor*> parts = {&a, &b};
  ASSERT_OK_AND_ASSIGN(Tensor all, ConcatBatch(parts));
  EXPECT_EQ(all.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_THAT(all.values<float>(), ElementsAre(1, 2, 3, 4, 5, 6));
  Tensor second = SliceBatch(all, 2, 1);
  EXPECT_EQ(second.shape, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(second.data, b.data);
  Tensor first = SliceBatch(all, 0, 2);
  EXPECT_EQ(first.data, a.data);
}

TEST(BatchTest, ConcatAndSliceBytes) {
  std::vector<std::string> a_values = {"one", "", "three", "4"};
  std::vector<std::string> b_values = {"five", "six"};
  Tensor a = Tensor::FromStrings("s", {2, 2}, a_values);
  Tensor b = Tensor::FromStrings("s", {1, 2}, b_values);
  std::vector<const Tensor*> parts = {&a, &b};
  ASSERT_OK_AND_ASSIGN(Tensor all, ConcatBatch(parts));
  EXPECT_THAT(all.CheckConsistent(), IsOk());
  EXPECT_EQ(all.shape, (std::vector<int64_t>{3, 2}));
  Tensor row1 = SliceBatch(all, 1, 1);
  EXPECT_THAT(row1.byte_elements(), ElementsAre("three", "4"));
  Tensor rows12 = SliceBatch(all, 1, 2);
  EXPECT_THAT(rows12.byte_elements(), ElementsAre("three", "4", "five", "six"));
}

TEST(BatchTest, ConcatRejectsMismatches) {
  std::vector<float> v = {1, 2, 3, 4};
  std::vector<double> d = {1, 2, 3, 4};
  Tensor a = Tensor::FromValues<float>("x", DataType::kFp32, {2, 2}, v);
  Tensor other_tail = Tensor::FromValues<float>("x", DataType::kFp32, {1, 4}, v);
  Tensor other_type = Tensor::FromValues<double>("x", DataType::kFp64, {2, 2}, d);
  Tensor other_name = Tensor::FromValues<float>("y", DataType::kFp32, {2, 2}, v);
  Tensor scalar = Tensor::FromValues<float>("x", DataType::kFp32, {}, std::span<const float>(v).first(1));
  Tensor broken = Tensor::FromValues<float>("x", DataType::kFp32, {3, 2}, v);
  for (const Tensor* bad : {&other_tail, &other_type, &other_name, &broken}) {
    std::vector<const Tensor*> parts = {&a, bad};
    EXPECT_THAT(ConcatBatch(parts), StatusIs(absl::StatusCode::kInvalidArgument)) << bad->name;
  }
  std::vector<const Tensor*> scalars = {&scalar, &scalar};
  EXPECT_THAT(ConcatBatch(scalars), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scalar")));
  EXPECT_THAT(ConcatBatch({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BatchTest, SliceOfEmptyRows) {
  Tensor t = Tensor::FromValues<float>("x", DataType::kFp32, {3, 0}, std::span<const float>());
  Tensor s = SliceBatch(t, 1, 2);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{2, 0}));
  EXPECT_THAT(s.CheckConsistent(), IsOk());
}

}  // namespace
}  // namespace cairn::serving
