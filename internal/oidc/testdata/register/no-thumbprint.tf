resource "aws_iam_openid_connect_provider" "cluster" {
  url            = "https://my-bucket.s3.us-west-2.amazonaws.com"
  client_id_list = ["sts.amazonaws.com", "my-audience"]
}
